//! Code generation: the `Secrets` impl (a static spec plus `from_values`) and the inherent `load` functions.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident};

use crate::ast::{Field, Input};
use crate::ctxt::Ctxt;
use crate::{fallback, prepared, valid};

/// Expands `#[derive(Secrets)]`, or on invalid input its errors plus a stub impl.
pub fn derive(node: &DeriveInput) -> TokenStream {
    match try_expand(node) {
        Ok(tokens) => tokens,
        Err(errors) => fallback::expand(node, errors),
    }
}

fn try_expand(node: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let input = Input::from_syn(node, &cx);
    let mut tracked = TokenStream::new();
    if let Some(input) = &input {
        valid::check(input, &cx);
        // Against the stores' snapshot (`skm prepare`) only a declaration that is valid in itself.
        if cx.error_count() == 0 {
            tracked = prepared::check(input, &cx, type_name);
        }
    }
    cx.check()?;
    match input {
        Some(input) => Ok(impl_struct(&input, tracked)),
        // `from_syn` records an error whenever it gives up, so `check` has returned it already.
        None => Err(syn::Error::new(Span::call_site(), "skm-derive: invalid input")),
    }
}

/// The impl; `tracked` makes the build depend on the snapshots the declarations were checked against.
fn impl_struct(input: &Input, tracked: TokenStream) -> TokenStream {
    let ident = &input.original.ident;
    let name = ident.unraw().to_string();
    let prefix = opt_str(input.attrs.prefix.as_ref().map(|p| p.value.as_str()));
    let field_specs = input.fields.iter().map(field_spec);

    // Locals are numbered rather than named after fields, so a field called `__values` cannot shadow the
    // argument.
    let locals: Vec<Ident> = (0..input.fields.len()).map(|i| format_ident!("__field{}", i)).collect();
    // One pattern for all fields instead of a `?` per field: each `?` is an exit that must drop every other
    // field, which made the generated code (and compile time) grow with the square of the field count.
    let unpack = if locals.is_empty() {
        quote!()
    } else {
        quote! {
            let (#(::skm::__private::Some(#locals),)*) = (#(#locals,)*) else {
                return ::skm::__private::None;
            };
        }
    };
    let asserts = input.fields.iter().map(assert_type);
    let backends = input.fields.iter().map(assert_backend);
    let takes = input.fields.iter().map(take);
    let idents = input.fields.iter().map(|f| f.ident);
    let inherent = inherent_impl(input.original);

    quote! {
        const _: () = {
            #tracked

            #[automatically_derived]
            impl ::skm::__private::Secrets for #ident {
                fn spec() -> &'static ::skm::__private::StructSpec {
                    static SPEC: ::skm::__private::StructSpec = ::skm::__private::StructSpec {
                        name: #name,
                        prefix: #prefix,
                        fields: &[#(#field_specs),*],
                    };
                    &SPEC
                }

                fn from_values(
                    __values: &mut ::skm::__private::Values<'_>,
                ) -> ::skm::__private::Option<Self> {
                    #(#asserts)*
                    #(#backends)*
                    // Take every field before giving up, so that every failing field is recorded.
                    #(let #locals = #takes;)*
                    // Uses the argument even when the struct has no fields.
                    let _ = __values;
                    #unpack
                    ::skm::__private::Some(Self { #(#idents: #locals,)* })
                }
            }
        };
        #inherent
    }
}

/// The `FieldSpec` literal of one field.
fn field_spec(field: &Field) -> TokenStream {
    let name = field.ident.unraw().to_string();
    let attrs = &field.attrs;
    let kind = if let Some(dynamic) = &attrs.dynamic {
        let path = &dynamic.value;
        let type_name = type_name(field.ty);
        quote! {
            ::skm::__private::FieldKind::Leased(::skm::__private::LeasedSpec {
                path: #path,
                type_name: #type_name,
            })
        }
    } else if attrs.flatten.is_some() {
        let ty = field.ty;
        // Spanned on the type so that "`T: Secrets` is not satisfied" points at it.
        quote_spanned! {ty.span()=>
            ::skm::__private::FieldKind::Flatten(<#ty as ::skm::__private::Secrets>::spec)
        }
    } else {
        let path = opt_cow(attrs.path.as_ref().map(|o| o.value.as_str()));
        let key = opt_cow(attrs.key.as_ref().map(|o| o.value.as_str()));
        let env = opt_cow(attrs.env.as_ref().map(|o| o.value.as_str()));
        let default = opt_cow(attrs.default.as_ref().map(|o| o.value.as_str()));
        let optional = field.is_option();
        let plain = attrs.plain.is_some();
        let type_name = type_name(field.ty);
        let version = if let Some(stage) = &attrs.version_stage {
            let stage = &stage.value;
            quote!(::skm::__private::VersionPin::Stage(::skm::__private::Cow::Borrowed(#stage)))
        } else if let Some(id) = &attrs.version_id {
            let id = &id.value;
            quote!(::skm::__private::VersionPin::Id(::skm::__private::Cow::Borrowed(#id)))
        } else if let Some(number) = &attrs.version {
            let number = number.value;
            quote!(::skm::__private::VersionPin::Number(#number))
        } else {
            quote!(::skm::__private::VersionPin::Current)
        };
        let validate = validators(field);
        let rotating = field.rotating().is_some();
        let backend = opt_str(attrs.backend.as_ref().map(|o| o.value.as_str()));
        quote! {
            ::skm::__private::FieldKind::Secret(::skm::__private::SecretSpec {
                path: #path,
                key: #key,
                env: #env,
                default: #default,
                optional: #optional,
                plain: #plain,
                type_name: ::skm::__private::text(#type_name),
                version: #version,
                validate: #validate,
                rotating: #rotating,
                backend: #backend,
            })
        }
    };
    quote! {
        ::skm::__private::FieldSpec { name: #name, kind: #kind }
    }
}

/// The `Validators` literal of one field: `Validators::NONE` unless it declares `min_len`, `not` or `pattern`.
fn validators(field: &Field) -> TokenStream {
    let attrs = &field.attrs;
    if attrs.min_len.is_none() && attrs.not.is_none() && attrs.pattern.is_none() {
        return quote!(::skm::__private::Validators::NONE);
    }
    let min_len = match &attrs.min_len {
        // Unsuffixed, so that it is typed `usize` for the target, not for the host running the macro.
        Some(n) => {
            let n = Literal::u64_unsuffixed(n.value);
            quote!(::skm::__private::Some(#n))
        }
        None => quote!(::skm::__private::None),
    };
    let not = attrs.not.iter().flat_map(|o| &o.value);
    // The regex matcher is named only here, for a field that declares a pattern: a program without one
    // does not link the regex engine (see `Pattern`).
    let pattern = match &attrs.pattern {
        Some(o) => {
            let source = o.value.as_str();
            quote!(::skm::__private::Some(::skm::__private::Pattern::regex(#source)))
        }
        None => quote!(::skm::__private::None),
    };
    quote! {
        ::skm::__private::Validators {
            min_len: #min_len,
            not: ::skm::__private::Cow::Borrowed(&[#(::skm::__private::text(#not)),*]),
            pattern: #pattern,
        }
    }
}

/// A call that fails to compile, at the value of `backend = "..."`, unless that backend's cargo feature is
/// compiled in (the trait's message names the feature).
fn assert_backend(field: &Field) -> TokenStream {
    match &field.attrs.backend {
        Some(backend) => {
            let check = Ident::new(&backend.value, backend.span);
            quote_spanned!(backend.span=> ::skm::__private::compiled::#check::<()>();)
        }
        None => TokenStream::new(),
    }
}

/// A call that fails to compile, at the field's type, unless the type suits the declaration: a secret type
/// (`SecretString`, `SecretBox<T>`, ...) by default, anything deserializable with `plain`.
fn assert_type(field: &Field) -> TokenStream {
    let ty = field.ty;
    if field.attrs.flatten.is_some() || field.attrs.dynamic.is_some() {
        // `nested::<T>` already requires `T: Secrets`; `take_leased::<T>` requires `T: DeserializeOwned`.
        TokenStream::new()
    } else if field.attrs.plain.is_some() {
        // A plain `Rotating<T>` converts each version to `T`.
        let ty = field.rotating().flatten().unwrap_or(ty);
        quote_spanned!(ty.span()=> ::skm::__private::assert_plain::<#ty>();)
    } else {
        quote_spanned!(ty.span()=> ::skm::__private::assert_secret::<#ty>();)
    }
}

/// The expression that takes one field's value out of `__values`.
fn take(field: &Field) -> TokenStream {
    let ty = field.ty;
    let name = field.ident.unraw().to_string();
    if field.attrs.flatten.is_some() {
        quote_spanned!(ty.span()=> __values.nested::<#ty>(#name))
    } else if let (Some(_), Some(Some(inner))) = (&field.attrs.dynamic, field.leased()) {
        quote_spanned!(ty.span()=> __values.take_leased::<#inner>(#name))
    } else if let Some(Some(inner)) = field.rotating() {
        quote_spanned!(ty.span()=> __values.take_rotating::<#inner>(#name))
    } else {
        quote_spanned!(ty.span()=> __values.take::<#ty>(#name))
    }
}

/// `load` and `load_with`, so that a service writes `AppSecrets::load().await?` without naming the trait.
pub fn inherent_impl(node: &DeriveInput) -> TokenStream {
    let ident = &node.ident;
    let (impl_generics, ty_generics, where_clause) = node.generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics #ident #ty_generics #where_clause {
            /// Loads these secrets from the sources the environment configures.
            ///
            /// Shorthand for `Loader::from_env().await?.load::<Self>().await`; `Loader::from_env` documents
            /// the environment variables it reads.
            ///
            /// # Errors
            /// The environment configures the loader wrongly, a source cannot be reached, or fields are
            /// missing or do not parse; the error lists every failing field, never a secret value.
            pub async fn load() -> ::core::result::Result<Self, ::skm::__private::Error> {
                ::skm::__private::Loader::from_env().await?.load::<Self>().await
            }

            /// Loads these secrets with an explicitly configured loader.
            ///
            /// # Errors
            /// A source cannot be reached, or fields are missing or do not parse; the error lists every
            /// failing field, never a secret value.
            pub async fn load_with(
                loader: &::skm::__private::Loader,
            ) -> ::core::result::Result<Self, ::skm::__private::Error> {
                loader.load::<Self>().await
            }
        }
    }
}

/// `some_text("...")` or `None`, for an `Option<Cow<'static, str>>` of a declaration (see `SecretSpec`).
fn opt_cow(value: Option<&str>) -> TokenStream {
    match value {
        Some(s) => quote!(::skm::__private::some_text(#s)),
        None => quote!(::skm::__private::None),
    }
}

/// `Some("...")` or `None`, for an `Option<&'static str>` in the static spec.
fn opt_str(value: Option<&str>) -> TokenStream {
    match value {
        Some(s) => quote!(::skm::__private::Some(#s)),
        None => quote!(::skm::__private::None),
    }
}

/// The type as written, compactly: `Option < SecretBox < u16 > >` becomes `Option<SecretBox<u16>>`.
fn type_name(ty: &syn::Type) -> String {
    let mut s = ty.to_token_stream().to_string();
    for punct in ["<", ">", "::", ","] {
        s = s
            .replace(&format!(" {punct}"), punct)
            .replace(&format!("{punct} "), punct);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::type_name;

    #[test]
    fn type_names_are_compact() {
        let cases = [
            ("SecretString", "SecretString"),
            ("SecretBox<u16>", "SecretBox<u16>"),
            ("Option<SecretBox<Vec<u8>>>", "Option<SecretBox<Vec<u8>>>"),
            ("::secrecy::SecretString", "::secrecy::SecretString"),
            ("SecretBox<HashMap<String, u16>>", "SecretBox<HashMap<String,u16>>"),
        ];
        for (written, expected) in cases {
            let ty: syn::Type = syn::parse_str(written).unwrap();
            assert_eq!(type_name(&ty), expected, "{written}");
        }
    }
}
