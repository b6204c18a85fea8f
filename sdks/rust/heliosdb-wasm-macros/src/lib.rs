//! `#[heliosdb_procedure]` and `#[derive(Row)]`.
//!
//! The attribute keeps the function as written and adds its export twice:
//! once for the Basic ABI (docs/abi.md) and once for the Canonical ABI plus
//! the WIT text of the export (custom section `heliosdb:wit`, read by
//! `heliosdb-wasm build`). Both expansions go through the SDK's
//! `__select_abi!`, whose definition depends on the SDK's `component`
//! feature, so the user's crate needs no cfg of its own.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote};
use syn::{
    Data, DeriveInput, Fields, FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType,
    Type, parse_macro_input,
};

/// How a Rust type crosses the boundary.
#[derive(Clone)]
enum Kind {
    I64,
    I32,
    F64,
    F32,
    Bool,
    Text,
    Blob,
    Json,
    Option(Box<Kind>),
    /// `Vec<Row>`: a table result.
    Rows(syn::Ident),
    Unit,
}

impl Kind {
    fn wit(&self) -> String {
        match self {
            Kind::I64 => "s64".into(),
            Kind::I32 => "s32".into(),
            Kind::F64 => "f64".into(),
            Kind::F32 => "f32".into(),
            Kind::Bool => "bool".into(),
            Kind::Text | Kind::Json => "string".into(),
            Kind::Blob => "list<u8>".into(),
            Kind::Option(inner) => format!("option<{}>", inner.wit()),
            Kind::Rows(row) => format!("list<{}>", kebab(&row.to_string())),
            Kind::Unit => "_".into(),
        }
    }

    fn is_scalar(&self) -> bool {
        matches!(self, Kind::I64 | Kind::I32 | Kind::F64 | Kind::F32 | Kind::Bool)
    }
}

fn kebab(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if *c == '_' {
            out.push('-');
        } else if c.is_uppercase() {
            if i > 0 && chars[i - 1] != '_' && !chars[i - 1].is_uppercase() {
                out.push('-');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) => p.path.segments.last(),
        _ => None,
    }
}

fn generic_arg(seg: &syn::PathSegment, n: usize) -> Option<&Type> {
    match &seg.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .nth(n),
        _ => None,
    }
}

fn kind_of(ty: &Type) -> syn::Result<Kind> {
    if let Type::Tuple(t) = ty {
        if t.elems.is_empty() {
            return Ok(Kind::Unit);
        }
    }
    let unsupported = || {
        syn::Error::new_spanned(
            ty,
            "unsupported procedure type: use i64, i32, f64, f32, bool, String, Vec<u8>, Json, \
             Option<T>, or Vec<Row> (a #[derive(Row)] struct) for table results",
        )
    };
    let seg = last_segment(ty).ok_or_else(unsupported)?;
    Ok(match seg.ident.to_string().as_str() {
        "i64" => Kind::I64,
        "i32" => Kind::I32,
        "f64" => Kind::F64,
        "f32" => Kind::F32,
        "bool" => Kind::Bool,
        "String" => Kind::Text,
        "Json" => Kind::Json,
        "Option" => Kind::Option(Box::new(kind_of(generic_arg(seg, 0).ok_or_else(unsupported)?)?)),
        "Vec" => {
            let inner = generic_arg(seg, 0).ok_or_else(unsupported)?;
            let inner_seg = last_segment(inner).ok_or_else(unsupported)?;
            if inner_seg.ident == "u8" {
                Kind::Blob
            } else {
                Kind::Rows(inner_seg.ident.clone())
            }
        }
        _ => return Err(unsupported()),
    })
}

/// `Result<T, E>` -> (T, true); anything else -> (itself, false).
fn split_result(ty: &Type) -> (Type, bool) {
    if let Some(seg) = last_segment(ty) {
        if seg.ident == "Result" {
            if let Some(ok) = generic_arg(seg, 0) {
                return (ok.clone(), true);
            }
        }
    }
    (ty.clone(), false)
}

struct Param {
    name: syn::Ident,
    kind: Kind,
}

/// Basic ABI: wasm parameters and the expression that rebuilds the value.
fn basic_param(p: &Param, index: usize) -> (Vec<Tokens>, Tokens) {
    let sdk = quote!(::heliosdb_wasm_sdk::__private);
    let a = format_ident!("__{}", p.name);
    let b = format_ident!("__{}_len", p.name);
    let idx = index as u32;
    fn plain(kind: &Kind, a: &syn::Ident, b: &syn::Ident, sdk: &Tokens) -> (Vec<Tokens>, Tokens) {
        match kind {
            Kind::I64 => (vec![quote!(#a: i64)], quote!(#a)),
            Kind::I32 => (vec![quote!(#a: i32)], quote!(#a)),
            Kind::F64 => (vec![quote!(#a: f64)], quote!(#a)),
            Kind::F32 => (vec![quote!(#a: f32)], quote!(#a)),
            Kind::Bool => (vec![quote!(#a: i32)], quote!(#a != 0)),
            Kind::Text => (vec![quote!(#a: u32), quote!(#b: u32)], quote!(#sdk::basic_text(#a, #b))),
            Kind::Json => (
                vec![quote!(#a: u32), quote!(#b: u32)],
                quote!(::heliosdb_wasm_sdk::Json(#sdk::basic_text(#a, #b))),
            ),
            Kind::Blob => (vec![quote!(#a: u32), quote!(#b: u32)], quote!(#sdk::basic_blob(#a, #b))),
            _ => unreachable!("checked by the caller"),
        }
    }
    match &p.kind {
        Kind::Option(inner) => {
            let (params, expr) = plain(inner, &a, &b, &sdk);
            (params, quote!(if #sdk::basic_is_null(#idx) { None } else { Some(#expr) }))
        }
        kind => plain(kind, &a, &b, &sdk),
    }
}

/// Canonical ABI: flat core parameters and the lifting expression.
fn canon_param(p: &Param) -> (Vec<Tokens>, Tokens) {
    let sdk = quote!(::heliosdb_wasm_sdk::__private);
    let a = format_ident!("__{}", p.name);
    let b = format_ident!("__{}_len", p.name);
    let d = format_ident!("__{}_some", p.name);
    fn plain(kind: &Kind, a: &syn::Ident, b: &syn::Ident, sdk: &Tokens) -> (Vec<Tokens>, Tokens) {
        match kind {
            Kind::I64 => (vec![quote!(#a: i64)], quote!(#a)),
            Kind::I32 => (vec![quote!(#a: i32)], quote!(#a)),
            Kind::F64 => (vec![quote!(#a: f64)], quote!(#a)),
            Kind::F32 => (vec![quote!(#a: f32)], quote!(#a)),
            Kind::Bool => (vec![quote!(#a: i32)], quote!(#a != 0)),
            Kind::Text => (vec![quote!(#a: u32), quote!(#b: u32)], quote!(#sdk::canon_text(#a, #b))),
            Kind::Json => (
                vec![quote!(#a: u32), quote!(#b: u32)],
                quote!(::heliosdb_wasm_sdk::Json(#sdk::canon_text(#a, #b))),
            ),
            Kind::Blob => (vec![quote!(#a: u32), quote!(#b: u32)], quote!(#sdk::canon_blob(#a, #b))),
            _ => unreachable!("checked by the caller"),
        }
    }
    match &p.kind {
        Kind::Option(inner) => {
            let (mut params, expr) = plain(inner, &a, &b, &sdk);
            params.insert(0, quote!(#d: i32));
            (params, quote!(if #d == 0 { None } else { Some(#expr) }))
        }
        kind => plain(kind, &a, &b, &sdk),
    }
}

fn scalar_type(kind: &Kind) -> Tokens {
    match kind {
        Kind::I64 => quote!(i64),
        Kind::I32 => quote!(i32),
        Kind::F64 => quote!(f64),
        Kind::F32 => quote!(f32),
        Kind::Bool => quote!(i32),
        _ => unreachable!("scalars only"),
    }
}

/// Exports `fn` as a HeliosDB procedure under its own name (kebab-case in
/// the component).
#[proc_macro_attribute]
pub fn heliosdb_procedure(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(Span::call_site(), "#[heliosdb_procedure] takes no arguments")
            .to_compile_error()
            .into();
    }
    let func = parse_macro_input!(item as ItemFn);
    match expand_procedure(&func) {
        Ok(tokens) => quote!(#func #tokens).into(),
        Err(err) => {
            let err = err.to_compile_error();
            quote!(#func #err).into()
        }
    }
}

fn expand_procedure(func: &ItemFn) -> syn::Result<Tokens> {
    let name = &func.sig.ident;
    let sql_name = name.to_string();
    let wit_name = kebab(&sql_name);
    if !func.sig.generics.params.is_empty() || func.sig.asyncness.is_some() {
        return Err(syn::Error::new_spanned(&func.sig, "procedures are plain, non-generic, non-async fns"));
    }
    let mut params = Vec::new();
    for arg in &func.sig.inputs {
        let FnArg::Typed(pt) = arg else {
            return Err(syn::Error::new_spanned(arg, "procedures are free functions"));
        };
        let Pat::Ident(ident) = &*pt.pat else {
            return Err(syn::Error::new_spanned(&pt.pat, "use a plain parameter name"));
        };
        let kind = kind_of(&pt.ty)?;
        let ok = match &kind {
            Kind::Option(inner) => !matches!(**inner, Kind::Option(_) | Kind::Rows(_) | Kind::Unit),
            Kind::Rows(_) | Kind::Unit => false,
            _ => true,
        };
        if !ok {
            return Err(syn::Error::new_spanned(&pt.ty, "not a parameter type"));
        }
        params.push(Param { name: ident.ident.clone(), kind });
    }
    let (ret_ty, fallible) = match &func.sig.output {
        ReturnType::Default => (syn::parse_quote!(()), false),
        ReturnType::Type(_, ty) => split_result(ty),
    };
    let ret = kind_of(&ret_ty)?;

    let sdk = quote!(::heliosdb_wasm_sdk::__private);
    let args: Vec<Tokens> = params.iter().map(|p| { let n = &p.name; quote!(#n) }).collect();

    // -- Basic ABI ------------------------------------------------------------
    let basic_fn = format_ident!("__heliosdb_basic_{}", name);
    let mut basic_params = Vec::new();
    let mut basic_lets = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let (ps, expr) = basic_param(p, i);
        basic_params.extend(ps);
        let n = &p.name;
        basic_lets.push(quote!(let #n = #expr;));
    }
    let ret_full: Type = match &func.sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let batch = basic_batch(name, &sql_name, &params, &ret, fallible);
    let basic = quote! {
        #[doc(hidden)]
        #[unsafe(export_name = #sql_name)]
        pub extern "C" fn #basic_fn(#(#basic_params),*) -> <#ret_full as #sdk::BasicResult>::Abi {
            #(#basic_lets)*
            #sdk::basic_finish(#name(#(#args),*))
        }
        #batch
    };

    // -- Canonical ABI ----------------------------------------------------------
    let canon_fn = format_ident!("__heliosdb_canon_{}", name);
    let post_fn = format_ident!("__heliosdb_canon_post_{}", name);
    let post_name = format!("cabi_post_{wit_name}");
    let mut canon_params = Vec::new();
    let mut canon_lets = Vec::new();
    for p in &params {
        let (ps, expr) = canon_param(p);
        canon_params.extend(ps);
        let n = &p.name;
        canon_lets.push(quote!(let #n = #expr;));
    }
    let call = quote!(#name(#(#args),*));
    let canon = if !fallible && ret.is_scalar() {
        let ty = scalar_type(&ret);
        let value = if matches!(ret, Kind::Bool) { quote!(#call as i32) } else { call };
        quote! {
            #[doc(hidden)]
            #[unsafe(export_name = #wit_name)]
            pub extern "C" fn #canon_fn(#(#canon_params),*) -> #ty {
                #(#canon_lets)*
                #value
            }
        }
    } else if !fallible && matches!(ret, Kind::Unit) {
        quote! {
            #[doc(hidden)]
            #[unsafe(export_name = #wit_name)]
            pub extern "C" fn #canon_fn(#(#canon_params),*) {
                #(#canon_lets)*
                #call
            }
        }
    } else {
        quote! {
            #[doc(hidden)]
            #[unsafe(export_name = #wit_name)]
            pub extern "C" fn #canon_fn(#(#canon_params),*) -> *mut u8 {
                #(#canon_lets)*
                #sdk::canon_return(#call)
            }
            #[doc(hidden)]
            #[unsafe(export_name = #post_name)]
            pub extern "C" fn #post_fn(_: *mut u8) {
                #sdk::canon_post_return()
            }
        }
    };
    let wit_params: Vec<String> =
        params.iter().map(|p| format!("{}: {}", kebab(&p.name.to_string()), p.kind.wit())).collect();
    let wit_result = if fallible {
        format!(" -> result<{}, error>", ret.wit())
    } else if matches!(ret, Kind::Unit) {
        String::new()
    } else {
        format!(" -> {}", ret.wit())
    };
    let wit = format!("export {wit_name}: func({}){wit_result};\n", wit_params.join(", "));
    let section = wit_section(&format!("__HELIOSDB_WIT_{}", sql_name.to_uppercase()), &wit);
    Ok(quote! {
        ::heliosdb_wasm_sdk::__select_abi! {
            basic: { #basic }
            component: { #canon #section }
        }
    })
}

/// `<name>__batch(count, args, out)` (docs/abi.md §9) for a procedure whose
/// parameters and result are all numbers: whole columns in one guest call.
/// A failing row records its error (as the single-row export does) and ends
/// the batch there; the host reports that error.
fn basic_batch(name: &syn::Ident, sql_name: &str, params: &[Param], ret: &Kind, fallible: bool) -> Tokens {
    fn width(kind: &Kind) -> Option<(Tokens, usize)> {
        match kind {
            Kind::I64 => Some((quote!(i64), 8)),
            Kind::F64 => Some((quote!(f64), 8)),
            Kind::I32 | Kind::Bool => Some((quote!(i32), 4)),
            Kind::F32 => Some((quote!(f32), 4)),
            _ => None,
        }
    }
    let Some((out_ty, _)) = width(ret) else { return quote!() };
    let mut reads = Vec::new();
    let mut cols = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let Some((ty, size)) = width(&p.kind) else { return quote!() };
        let col = format_ident!("__col{}", i);
        cols.push(quote! {
            let #col = unsafe { args.add(offset) } as *const #ty;
            offset += n * #size;
        });
        let read = quote!(unsafe { #col.add(i).read_unaligned() });
        reads.push(if matches!(p.kind, Kind::Bool) { quote!(#read != 0) } else { read });
    }
    let sdk = quote!(::heliosdb_wasm_sdk::__private);
    let batch_fn = format_ident!("__heliosdb_batch_{}", name);
    let batch_name = format!("{sql_name}__batch");
    let call = quote!(#name(#(#reads),*));
    let produce = if fallible {
        quote! {
            let result = #call;
            let failed = result.is_err();
            let value = #sdk::basic_finish(result);
            if failed {
                return i as i32;
            }
        }
    } else {
        quote!(let value = #sdk::basic_finish(#call);)
    };
    quote! {
        #[doc(hidden)]
        #[unsafe(export_name = #batch_name)]
        pub extern "C" fn #batch_fn(count: i32, args: *const u8, out: *mut u8) -> i32 {
            let n = count as usize;
            let mut offset = 0usize;
            #(#cols)*
            let _ = offset;
            let out = out as *mut #out_ty;
            for i in 0..n {
                #produce
                unsafe { out.add(i).write_unaligned(value) };
            }
            count
        }
    }
}

/// A static placed in the `heliosdb:wit` custom section: wasm-ld
/// concatenates every such static, one WIT item per line.
fn wit_section(ident: &str, wit: &str) -> Tokens {
    let ident = syn::Ident::new(ident, Span::call_site());
    let bytes = syn::LitByteStr::new(wit.as_bytes(), Span::call_site());
    let len = wit.len();
    quote! {
        #[doc(hidden)]
        #[used]
        #[unsafe(link_section = "heliosdb:wit")]
        static #ident: [u8; #len] = *#bytes;
    }
}

/// The four hooks of docs/plugins.md: export name, and the parameters the
/// hook function takes after the context.
const HOOKS: [(&str, &[&str]); 4] = [
    ("pre_parse", &["sql"]),
    ("post_parse", &["ast"]),
    ("pre_execution", &["sql", "params"]),
    ("post_execution", &["columns", "rows"]),
];

/// Exports `fn` as a query-hook plugin's hook (SDK feature `plugin`):
/// `#[heliosdb_plugin(post_parse)]`, or `#[heliosdb_plugin]` on a function
/// named after its hook.
///
/// The function takes the context and the hook's values, each by reference,
/// by mutable reference or by value, and returns a `Verdict` or a
/// `Result<Verdict, Error>`:
///
/// | hook | parameters |
/// |---|---|
/// | `pre_parse` | `ctx: &Context, sql: &str` |
/// | `post_parse` | `ctx: &Context, ast: &mut serde_json::Value` |
/// | `pre_execution` | `ctx: &Context, sql: &str, params: &[Value]` |
/// | `post_execution` | `ctx: &Context, columns: &[String], rows: &[Vec<Value>]` |
///
/// The export is the Basic-ABI procedure `<hook>(request JSON) RETURNS JSON`
/// (docs/plugins.md §3), generated by `#[heliosdb_procedure]` on a hidden
/// function that calls `heliosdb_wasm_sdk::plugin::hooks::<hook>`.
#[proc_macro_attribute]
pub fn heliosdb_plugin(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    let hook = if attr.is_empty() {
        None
    } else {
        match syn::parse::<syn::Ident>(attr) {
            Ok(ident) => Some(ident),
            Err(_) => {
                let err = syn::Error::new(
                    Span::call_site(),
                    "expected a hook name: #[heliosdb_plugin(pre_parse | post_parse | pre_execution | post_execution)]",
                )
                .to_compile_error();
                return quote!(#func #err).into();
            }
        }
    };
    match expand_plugin(&func, hook) {
        Ok(tokens) => quote!(#func #tokens).into(),
        Err(err) => {
            let err = err.to_compile_error();
            quote!(#func #err).into()
        }
    }
}

fn expand_plugin(func: &ItemFn, hook: Option<syn::Ident>) -> syn::Result<Tokens> {
    let hook = hook.unwrap_or_else(|| func.sig.ident.clone());
    let Some((_, values)) = HOOKS.iter().find(|(name, _)| hook == name) else {
        return Err(syn::Error::new_spanned(
            &hook,
            "not a hook: name it in the attribute, #[heliosdb_plugin(pre_parse | post_parse | \
             pre_execution | post_execution)]",
        ));
    };
    if !func.sig.generics.params.is_empty() || func.sig.asyncness.is_some() {
        return Err(syn::Error::new_spanned(&func.sig, "hooks are plain, non-generic, non-async fns"));
    }
    let expected = 1 + values.len();
    if func.sig.inputs.len() != expected {
        let list = std::iter::once("ctx: &Context").chain(values.iter().copied()).collect::<Vec<_>>();
        return Err(syn::Error::new_spanned(
            &func.sig.inputs,
            format!("a {hook} hook takes {expected} parameters: ({})", list.join(", ")),
        ));
    }
    // The runner lends every value as `&mut`; each parameter takes it the
    // way the hook declares it.
    let mut names = Vec::new();
    let mut args = Vec::new();
    for (i, arg) in func.sig.inputs.iter().enumerate() {
        let FnArg::Typed(pt) = arg else {
            return Err(syn::Error::new_spanned(arg, "hooks are free functions"));
        };
        let name = format_ident!("__heliosdb_arg{}", i);
        args.push(match &*pt.ty {
            Type::Reference(r) if r.mutability.is_some() => quote!(#name),
            Type::Reference(_) => quote!(&*#name),
            _ if i == 0 => quote!(::core::clone::Clone::clone(#name)),
            _ => quote!(::core::mem::take(#name)),
        });
        names.push(name);
    }
    let user = &func.sig.ident;
    let module = format_ident!("__heliosdb_plugin_{}", hook);
    let sdk = quote!(::heliosdb_wasm_sdk);
    Ok(quote! {
        #[doc(hidden)]
        mod #module {
            #[#sdk::heliosdb_procedure]
            fn #hook(request: #sdk::Json) -> ::core::result::Result<#sdk::Json, #sdk::Error> {
                #sdk::plugin::hooks::#hook(request, |#(#names),*| super::#user(#(#args),*))
            }
        }
    })
}

/// A table row: `Vec<ThisStruct>` can be returned as `RETURNS TABLE(...)`,
/// one column per field, in order.
#[proc_macro_derive(Row)]
pub fn derive_row(item: TokenStream) -> TokenStream {
    let input = parse_macro_input!(item as DeriveInput);
    match expand_row(&input) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand_row(input: &DeriveInput) -> syn::Result<Tokens> {
    let name = &input.ident;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(input, "#[derive(Row)] needs a struct"));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(input, "#[derive(Row)] needs named fields"));
    };
    let mut idents = Vec::new();
    let mut types = Vec::new();
    let mut wit_fields = Vec::new();
    for f in &fields.named {
        let ident = f.ident.clone().expect("named");
        let kind = kind_of(&f.ty)?;
        if matches!(kind, Kind::Rows(_) | Kind::Unit) {
            return Err(syn::Error::new_spanned(&f.ty, "not a column type"));
        }
        wit_fields.push(format!("{}: {}", kebab(&ident.to_string()), kind.wit()));
        idents.push(ident);
        types.push(f.ty.clone());
    }
    let columns: Vec<String> = idents.iter().map(|i| i.to_string()).collect();
    let wit = format!("record {} {{ {} }}\n", kebab(&name.to_string()), wit_fields.join(", "));
    let section = wit_section(&format!("__HELIOSDB_WIT_ROW_{}", name.to_string().to_uppercase()), &wit);
    let sdk = quote!(::heliosdb_wasm_sdk::__private);
    Ok(quote! {
        impl ::heliosdb_wasm_sdk::Row for #name {
            fn columns() -> &'static [&'static str] {
                &[#(#columns),*]
            }
            fn into_values(self) -> ::std::vec::Vec<::heliosdb_wasm_sdk::Value> {
                ::std::vec![#(::heliosdb_wasm_sdk::Value::from(self.#idents)),*]
            }
        }
        unsafe impl #sdk::Lower for #name {
            const ALIGN: usize = #sdk::max_align(&[#(<#types as #sdk::Lower>::ALIGN),*]);
            const SIZE: usize = #sdk::record_size(
                &[#((<#types as #sdk::Lower>::SIZE, <#types as #sdk::Lower>::ALIGN)),*]
            );
            unsafe fn store(self, dst: *mut u8) {
                let mut offset = 0usize;
                #(
                    offset = #sdk::align_up(offset, <#types as #sdk::Lower>::ALIGN);
                    unsafe { #sdk::Lower::store(self.#idents, dst.add(offset)) };
                    offset += <#types as #sdk::Lower>::SIZE;
                )*
                let _ = offset;
            }
        }
        ::heliosdb_wasm_sdk::__select_abi! {
            basic: {}
            component: { #section }
        }
    })
}
