//! The parsed model of a `#[derive(Secrets)]` input, borrowing syn's nodes so that errors keep their spans.

use syn::{Data, DeriveInput, Fields, Ident, Type};

use crate::attr::{self, FieldAttrs, StructAttrs};
use crate::ctxt::Ctxt;

/// Shown whenever the input is not a struct with named fields.
const NEEDS_NAMED: &str = "`#[derive(Secrets)]` needs a struct with named fields, \
    e.g. `struct AppSecrets { #[secret(env = \"JWT_SECRET\")] jwt: SecretString }`";

pub struct Input<'a> {
    pub original: &'a DeriveInput,
    pub attrs: StructAttrs,
    pub fields: Vec<Field<'a>>,
}

pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub attrs: FieldAttrs<'a>,
}

impl<'a> Input<'a> {
    /// Parses the input; `None` when its shape rules out a derive (the reason is recorded in `cx`).
    pub fn from_syn(node: &'a DeriveInput, cx: &Ctxt) -> Option<Self> {
        let attrs = attr::get_struct_attrs(cx, &node.attrs);
        let named = match &node.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => Some(named),
                Fields::Unnamed(unnamed) => {
                    cx.error_spanned_by(unnamed, NEEDS_NAMED);
                    None
                }
                Fields::Unit => {
                    cx.error_spanned_by(&node.ident, NEEDS_NAMED);
                    None
                }
            },
            Data::Enum(data) => {
                cx.error_spanned_by(data.enum_token, NEEDS_NAMED);
                None
            }
            Data::Union(data) => {
                cx.error_spanned_by(data.union_token, NEEDS_NAMED);
                None
            }
        };
        // The spec is a `static`, which cannot mention the struct's type parameters (a flattened
        // `T` would need `T::spec` in it), so generics are rejected rather than half supported.
        if !node.generics.params.is_empty() {
            cx.error_spanned_by(
                &node.generics,
                "`#[derive(Secrets)]` does not support generic parameters: a struct's secret declarations are \
                 static data; declare a concrete struct for each set of secrets",
            );
        }
        let fields = named?
            .named
            .iter()
            .map(|field| Field {
                // Named fields always have an ident.
                ident: field.ident.as_ref().expect("named field"),
                ty: &field.ty,
                attrs: attr::get_field_attrs(cx, &field.attrs),
            })
            .collect();
        Some(Input {
            original: node,
            attrs,
            fields,
        })
    }
}

impl Field<'_> {
    /// Whether the field's type is `Option<...>`: its last path segment is `Option`.
    pub fn is_option(&self) -> bool {
        let mut ty = self.ty;
        // `macro_rules!` may wrap a type in an invisible group.
        while let Type::Group(group) = ty {
            ty = &group.elem;
        }
        match ty {
            Type::Path(path) => path.qself.is_none() && path.path.segments.last().is_some_and(|s| s.ident == "Option"),
            _ => false,
        }
    }
}
