//! What to emit when the input is invalid: the errors, plus stubs that keep the rest of the crate compiling.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

/// The `compile_error!`s, a stub `Secrets` impl and stub `load`/`load_with`.
///
/// Expand to an impl anyway so that callers of `AppSecrets::load()` or `loader.load::<AppSecrets>()` see
/// only the real error, not "no function `load`" or "`AppSecrets: Secrets` is not satisfied" as well.
pub fn expand(node: &DeriveInput, error: syn::Error) -> TokenStream {
    let ident = &node.ident;
    let (impl_generics, ty_generics, where_clause) = node.generics.split_for_impl();
    let error = error.into_compile_error();
    quote! {
        #error

        const _: () = {
            #[automatically_derived]
            impl #impl_generics ::skm::__private::Secrets for #ident #ty_generics #where_clause {
                fn spec() -> &'static ::skm::__private::StructSpec {
                    ::core::unimplemented!()
                }

                fn from_values(
                    _: &mut ::skm::__private::Values<'_>,
                ) -> ::skm::__private::Option<Self> {
                    ::core::unimplemented!()
                }
            }
        };

        // Bodies are stubs too: the real ones may need bounds that an invalid input cannot meet.
        #[automatically_derived]
        impl #impl_generics #ident #ty_generics #where_clause {
            /// Not generated: `#[derive(Secrets)]` reported an error.
            pub async fn load() -> ::core::result::Result<Self, ::skm::__private::Error> {
                ::core::unimplemented!()
            }

            /// Not generated: `#[derive(Secrets)]` reported an error.
            pub async fn load_with(
                _: &::skm::__private::Loader,
            ) -> ::core::result::Result<Self, ::skm::__private::Error> {
                ::core::unimplemented!()
            }
        }
    }
}
