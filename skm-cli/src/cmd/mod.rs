//! One module per command family; [`dispatch`] routes a parsed command line to it.

mod check;
mod completions;
pub(crate) mod diff;
mod doctor;
pub(crate) mod github;
mod manifest;
mod migrate;
mod ops;
#[cfg(feature = "postgres")]
mod pgrotate;
mod policy;
pub(crate) mod prepare;
pub(crate) mod run;
mod template;
pub(crate) mod util;

use crate::args::Command;
use crate::{Ctx, Fail};

/// Runs `command`; returns the exit code, or why it stopped.
pub(crate) async fn dispatch(ctx: &mut Ctx<'_, '_>, command: Command) -> Result<u8, Fail> {
    match command {
        Command::Run(args) => run::run(ctx, args).await,
        Command::Export(args) => github::export(ctx, args).await,
        Command::Get {
            path,
            key,
            version,
            reveal,
        } => ops::get(ctx, &path, key.as_deref(), version.as_deref(), reveal).await,
        Command::Put {
            path,
            key,
            tags,
            description,
            create_only,
            keep_newline,
        } => {
            let options = ops::PutOptions {
                tags,
                description,
                create_only,
                keep_newline,
            };
            ops::put(ctx, &path, key.as_deref(), options).await
        }
        Command::List { prefix } => ops::list(ctx, prefix.as_deref().unwrap_or("")).await,
        Command::Delete {
            path,
            force,
            recovery_days,
            yes,
        } => ops::delete(ctx, &path, force, recovery_days, yes).await,
        Command::Versions { path } => ops::versions(ctx, &path).await,
        Command::Rollback { path, to } => ops::rollback(ctx, &path, &to).await,
        // Before anything is read or written: a weak value is refused, whatever the backend.
        Command::Rotate {
            generate,
            charset,
            allow_weak: false,
            ..
        } if ops::entropy_bits(generate, charset) < ops::MIN_ENTROPY_BITS => Err(ops::too_weak(generate, charset)),
        #[cfg(feature = "postgres")]
        Command::Rotate {
            path,
            key: Some(key),
            generate,
            charset,
            postgres_role: Some(role),
            postgres_url,
            admin_path,
            admin_key,
            ..
        } => {
            let admin = pgrotate::AdminFrom {
                url: postgres_url,
                path: admin_path,
                key: admin_key,
            };
            pgrotate::run(ctx, &path, &key, &role, admin, generate, charset).await
        }
        Command::Rotate {
            path,
            key,
            generate,
            charset,
            force,
            ..
        } => ops::rotate(ctx, &path, key.as_deref(), generate, charset, force).await,
        Command::Migrate(args) => migrate::run(ctx, args).await,
        Command::Check {
            dotenv,
            no_dotenv,
            strict,
        } => check::run(ctx, dotenv, no_dotenv, strict).await,
        Command::Diff(args) => diff::run(ctx, args).await,
        Command::Template { output, force } => template::run(ctx, &output, force),
        Command::Policy(args) => policy::run(ctx, &args),
        Command::Doctor { dotenv } => doctor::run(ctx, dotenv).await,
        Command::Manifest {
            format,
            schema: false,
            output,
        } => manifest::run(ctx, format, &output),
        Command::Manifest {
            schema: true, output, ..
        } => manifest::schema(ctx, &output),
        Command::Completions { shell } => completions::run(ctx, shell),
        Command::Prepare(args) => prepare::run(ctx, args).await,
    }
}
