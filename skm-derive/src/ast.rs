//! The parsed model of a `#[derive(Secrets)]` input, borrowing syn's nodes so that errors keep their spans.

use syn::{Data, DeriveInput, Fields, GenericArgument, Ident, PathArguments, PathSegment, Type};

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

impl<'a> Field<'a> {
    /// Whether the field's type is `Option<...>`: its last path segment is `Option`.
    pub fn is_option(&self) -> bool {
        last_segment(self.ty).is_some_and(|s| s.ident == "Option")
    }

    /// For a `Rotating<T>` field (its type's last path segment is `Rotating`): `Some(Some(T))`, or
    /// `Some(None)` when the segment lacks exactly one type argument.
    ///
    /// Matched by name, as `Option` is: a type alias of `Rotating<T>` is not recognized.
    pub fn rotating(&self) -> Option<Option<&'a Type>> {
        rotating_inner(self.ty)
    }

    /// For a `Leased<T>` field: `Some(Some(T))`, or `Some(None)` when the segment lacks exactly one type
    /// argument. Matched by name, as `Rotating` is.
    pub fn leased(&self) -> Option<Option<&'a Type>> {
        let segment = last_segment(self.ty).filter(|s| s.ident == "Leased")?;
        Some(single_type_argument(segment))
    }

    /// Whether the type is `Option<Rotating<...>>`, which the loader does not support.
    pub fn is_option_of_rotating(&self) -> bool {
        let Some(segment) = last_segment(self.ty).filter(|s| s.ident == "Option") else {
            return false;
        };
        single_type_argument(segment).is_some_and(|inner| rotating_inner(inner).is_some())
    }
}

fn rotating_inner(ty: &Type) -> Option<Option<&Type>> {
    let segment = last_segment(ty).filter(|s| s.ident == "Rotating")?;
    Some(single_type_argument(segment))
}

/// The last segment of a plain path type such as `skm::Rotating<T>`.
fn last_segment(mut ty: &Type) -> Option<&PathSegment> {
    // `macro_rules!` may wrap a type in an invisible group.
    while let Type::Group(group) = ty {
        ty = &group.elem;
    }
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        _ => None,
    }
}

/// `T` in `Segment<T>`; `None` unless the segment has exactly one argument and it is a type.
fn single_type_argument(segment: &PathSegment) -> Option<&Type> {
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(inner)] => Some(inner),
        _ => None,
    }
}
