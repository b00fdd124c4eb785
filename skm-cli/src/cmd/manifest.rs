//! `manifest`: export the declarations (never a secret value) for the standalone binary's `--manifest`.

use std::path::Path;

use crate::args::ManifestFormat;
use crate::decl::Manifest;
use crate::{exit, Ctx, Fail};

pub(crate) fn run(ctx: &mut Ctx<'_, '_>, format: ManifestFormat, output: &Path) -> Result<u8, Fail> {
    let decls = ctx.declarations("manifest")?;
    let manifest = Manifest::from_declarations(&decls);
    let json = format == ManifestFormat::Json || (ctx.ui.json && output == Path::new("-"));
    let text = if json {
        serde_json::to_string_pretty(&manifest).map_err(|e| Fail::Failed(format!("cannot encode the manifest: {e}")))?
            + "\n"
    } else {
        let body = toml::to_string(&manifest).map_err(|e| Fail::Failed(format!("cannot encode the manifest: {e}")))?;
        format!(
            "# Declarations of `{}`, exported by `skm manifest`. No secret values: only plain fields' defaults are written.\n\
             # Use it with the standalone tool: skm --manifest FILE check | migrate | template | policy\n\n{body}",
            manifest.struct_name
        )
    };
    if output == Path::new("-") {
        let _ = ctx.ui.io.stdout.write_all(text.as_bytes());
        return Ok(exit::OK);
    }
    crate::cmd::util::write_atomic(output, text.as_bytes(), Some(0o644))
        .map_err(|e| Fail::Failed(format!("cannot write {}: {e}", output.display())))?;
    ctx.ui.note(format!(
        "wrote {} ({} declared secrets)",
        output.display(),
        manifest.secrets.len()
    ));
    Ok(exit::OK)
}

/// `manifest --schema`: the manifest's JSON Schema, for editors. Needs no declarations.
pub(crate) fn schema(ctx: &mut Ctx<'_, '_>, output: &Path) -> Result<u8, Fail> {
    let text = serde_json::to_string_pretty(&Manifest::json_schema())
        .map_err(|e| Fail::Failed(format!("cannot encode the schema: {e}")))?
        + "\n";
    if output == Path::new("-") {
        let _ = ctx.ui.io.stdout.write_all(text.as_bytes());
        return Ok(exit::OK);
    }
    crate::cmd::util::write_atomic(output, text.as_bytes(), Some(0o644))
        .map_err(|e| Fail::Failed(format!("cannot write {}: {e}", output.display())))?;
    ctx.ui.note(format!("wrote {}", output.display()));
    Ok(exit::OK)
}
