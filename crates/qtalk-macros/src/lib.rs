//! The `#[qtalk::service]` attribute. Use it through the `qtalk` crate (`qtalk::service`), whose
//! documentation has the examples; this crate only generates code.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemTrait, LitStr, Pat, PathArguments, ReturnType,
    TraitItem, TraitItemFn, Type,
};

/// Turns a trait of async methods into a typed qtalk service: the trait itself (with `Send`
/// futures), a `<Trait>Client` that calls it, and a provided `into_mux` method that routes each
/// method's selector to an implementation. See `qtalk::service` for the full description.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            Span::call_site(),
            "#[qtalk::service] takes no arguments (name selectors with #[qtalk(selector = \"...\")] on methods)",
        )
        .to_compile_error()
        .into();
    }
    let item = syn::parse_macro_input!(item as ItemTrait);
    match expand(item) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// One method of the service, as the generated code needs it.
struct Method {
    name: Ident,
    selector: String,
    docs: Vec<Attribute>,
    /// Whether the implementation takes the `Call` (after `&self`).
    takes_call: bool,
    /// Names and types of the wire parameters, in order.
    params: Vec<(Ident, Type)>,
    /// The declared output type.
    output: Type,
    /// The reply type, when the output is `Result<T, E>`; `None` when the output is the reply.
    result_ok: Option<Type>,
}

/// `#[qtalk(selector = "...")]`.
struct MethodOptions {
    selector: Option<LitStr>,
}

impl Parse for MethodOptions {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        if key != "selector" {
            return Err(syn::Error::new(
                key.span(),
                "unknown option; expected `selector = \"...\"`",
            ));
        }
        input.parse::<syn::Token![=]>()?;
        let selector: LitStr = input.parse()?;
        Ok(MethodOptions {
            selector: Some(selector),
        })
    }
}

/// `to_upper` -> `ToUpper`: Go's exported method names, which the reference's function
/// handlers are called by.
fn go_name(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

/// Whether `ty` names qtalk's `Call` (by its last path segment).
fn is_call(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Call" && s.arguments.is_empty()),
        _ => false,
    }
}

/// `T` when `ty` is `Result<T, E>`.
fn result_ok(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    if args.args.len() != 2 {
        return None;
    }
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}

fn parse_method(f: &mut TraitItemFn) -> syn::Result<Method> {
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "methods of a #[qtalk::service] trait are `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "methods of a #[qtalk::service] trait cannot be generic",
        ));
    }
    if f.default.is_some() {
        return Err(syn::Error::new(
            sig.ident.span(),
            "methods of a #[qtalk::service] trait have no default body",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        other => {
            let span = other.map_or(sig.ident.span(), |a| a.span());
            return Err(syn::Error::new(
                span,
                "methods of a #[qtalk::service] trait take `&self` first",
            ));
        }
    }
    let mut takes_call = false;
    let mut params = Vec::new();
    for (i, arg) in inputs.enumerate() {
        let FnArg::Typed(pt) = arg else {
            return Err(syn::Error::new(arg.span(), "unexpected receiver"));
        };
        if i == 0 && is_call(&pt.ty) {
            takes_call = true;
            continue;
        }
        if matches!(*pt.ty, Type::Reference(_)) {
            return Err(syn::Error::new(
                pt.ty.span(),
                "parameters of a #[qtalk::service] method are owned values (they are decoded \
                 from the call's arguments)",
            ));
        }
        let name = match &*pt.pat {
            Pat::Ident(p) => p.ident.clone(),
            _ => format_ident!("arg{}", i),
        };
        params.push((name, (*pt.ty).clone()));
    }
    let output = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let mut selector = None;
    let mut docs = Vec::new();
    let mut kept = Vec::new();
    for attr in f.attrs.drain(..) {
        if attr.path().is_ident("qtalk") {
            let options: MethodOptions = attr.parse_args()?;
            selector = options.selector;
            continue;
        }
        if attr.path().is_ident("doc") {
            docs.push(attr.clone());
        }
        kept.push(attr);
    }
    f.attrs = kept;
    let selector = match selector {
        Some(lit) => {
            let s = lit.value();
            if s.is_empty() {
                return Err(syn::Error::new(lit.span(), "a selector cannot be empty"));
            }
            s
        }
        None => go_name(&sig.ident.to_string()),
    };
    Ok(Method {
        name: sig.ident.clone(),
        selector,
        docs,
        takes_call,
        result_ok: result_ok(&output),
        params,
        output,
    })
}

fn expand(mut item: ItemTrait) -> syn::Result<TokenStream2> {
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(
            item.generics.span(),
            "a #[qtalk::service] trait cannot be generic",
        ));
    }
    let mut methods = Vec::new();
    for entry in item.items.iter_mut() {
        match entry {
            TraitItem::Fn(f) => methods.push(parse_method(f)?),
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "a #[qtalk::service] trait holds only `async fn` methods",
                ))
            }
        }
    }
    for m in &methods {
        if ["new", "with_prefix", "caller", "selector_of"].contains(&m.name.to_string().as_str()) {
            return Err(syn::Error::new(
                m.name.span(),
                format!(
                    "`{}` is a method of the generated client; name the method otherwise (the \
                     selector can stay: #[qtalk(selector = \"...\")])",
                    m.name
                ),
            ));
        }
    }
    for (i, m) in methods.iter().enumerate() {
        if let Some(other) = methods[..i].iter().find(|o| o.selector == m.selector) {
            return Err(syn::Error::new(
                m.name.span(),
                format!(
                    "selector {:?} is used by `{}` already; rename one with #[qtalk(selector = \"...\")]",
                    m.selector, other.name
                ),
            ));
        }
    }

    // The trait: every method returns a `Send` future, so handlers can run on any thread.
    for (entry, m) in item.items.iter_mut().zip(&methods) {
        let TraitItem::Fn(f) = entry else { continue };
        f.sig.asyncness = None;
        let output = &m.output;
        f.sig.output = syn::parse_quote!(
            -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
        );
    }

    let trait_name = &item.ident;
    let vis = &item.vis;
    let client = format_ident!("{}Client", trait_name);

    // Routes each selector to the implementation.
    let registrations = methods.iter().map(|m| {
        let name = &m.name;
        let selector = &m.selector;
        let idents: Vec<&Ident> = m.params.iter().map(|(n, _)| n).collect();
        let types: Vec<&Type> = m.params.iter().map(|(_, t)| t).collect();
        let call_arg = if m.takes_call {
            quote!(call,)
        } else {
            quote!()
        };
        let invoke = quote!(service.#name(#call_arg #(#idents),*).await);
        let reply = if m.result_ok.is_some() {
            invoke
        } else {
            quote!(::core::result::Result::<_, ::core::convert::Infallible>::Ok(#invoke))
        };
        quote! {
            {
                let service = service.clone();
                let _ = mux.handle(
                    #selector,
                    ::qtalk::rpc::func(
                        move |call: ::qtalk::rpc::Call, (#(#idents,)*): (#(#types,)*)| {
                            let service = service.clone();
                            let _ = &call;
                            async move { #reply }
                        },
                    ),
                );
            }
        }
    });
    let into_mux: TraitItem = syn::parse_quote! {
        /// Routes the selector of every method of this service to `self`, ready for a
        /// `qtalk::rpc::Server`, a `Peer`, or mounting under a prefix in another `RespondMux`.
        fn into_mux(self) -> ::qtalk::rpc::RespondMux
        where
            Self: ::core::marker::Sized + ::core::marker::Send + ::core::marker::Sync + 'static,
        {
            let service = ::std::sync::Arc::new(self);
            let mux = ::qtalk::rpc::RespondMux::new();
            #(#registrations)*
            mux
        }
    };
    item.items.push(into_mux);

    let client_methods = methods.iter().map(|m| {
        let name = &m.name;
        let selector = &m.selector;
        let docs = &m.docs;
        let params = m.params.iter().map(|(n, t)| quote!(#n: #t));
        let idents: Vec<&Ident> = m.params.iter().map(|(n, _)| n).collect();
        let reply = m.result_ok.clone().unwrap_or_else(|| m.output.clone());
        let call_note = format!("Calls `{selector}`.");
        quote! {
            #(#docs)*
            #[doc = ""]
            #[doc = #call_note]
            pub async fn #name(&self, #(#params),*) -> ::core::result::Result<#reply, ::qtalk::rpc::Error> {
                self.caller.call(&self.selector_of(#selector), &(#(#idents,)*)).await
            }
        }
    });
    let client_doc = format!(
        "Calls a [`{trait_name}`] service on the other side of a session: each method sends \
         its parameters as positional arguments to the method's selector."
    );
    let client_tokens = quote! {
        #[doc = #client_doc]
        #[derive(Clone, Debug)]
        #vis struct #client {
            caller: ::qtalk::rpc::Caller,
            prefix: ::std::string::String,
        }

        impl #client {
            /// A client calling the service's selectors as they are (no prefix).
            #vis fn new(caller: ::qtalk::rpc::Caller) -> Self {
                Self { caller, prefix: ::std::string::String::new() }
            }

            /// A client for a service mounted under `prefix`: selectors become
            /// `prefix.Selector`.
            #vis fn with_prefix(
                caller: ::qtalk::rpc::Caller,
                prefix: impl ::core::convert::Into<::std::string::String>,
            ) -> Self {
                Self { caller, prefix: prefix.into() }
            }

            /// The caller the client uses.
            #vis fn caller(&self) -> &::qtalk::rpc::Caller {
                &self.caller
            }

            fn selector_of(&self, name: &str) -> ::std::string::String {
                if self.prefix.is_empty() {
                    name.to_string()
                } else {
                    ::std::format!("{}.{}", self.prefix, name)
                }
            }

            #(#client_methods)*
        }
    };

    let mut out = item.into_token_stream();
    out.extend(client_tokens);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{expand, go_name};
    use syn::ItemTrait;

    fn error_of(item: ItemTrait) -> String {
        match expand(item) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        let cases: Vec<(ItemTrait, &str)> = vec![
            (
                syn::parse_quote!(
                    trait T {
                        fn f(&self);
                    }
                ),
                "are `async fn`",
            ),
            (
                syn::parse_quote!(
                    trait T {
                        async fn f<X>(&self, x: X);
                    }
                ),
                "cannot be generic",
            ),
            (
                syn::parse_quote!(
                    trait T {
                        async fn f(&self) {}
                    }
                ),
                "no default body",
            ),
            (
                syn::parse_quote!(
                    trait T {
                        async fn f(self);
                    }
                ),
                "take `&self` first",
            ),
            (
                syn::parse_quote!(
                    trait T {
                        async fn f(&self, s: &str);
                    }
                ),
                "owned values",
            ),
            (
                syn::parse_quote!(
                    trait T {
                        const N: u32;
                    }
                ),
                "only `async fn`",
            ),
            (
                syn::parse_quote!(
                    trait T<X> {
                        async fn f(&self);
                    }
                ),
                "cannot be generic",
            ),
            (
                syn::parse_quote!(
                    trait T {
                        async fn new(&self);
                    }
                ),
                "method of the generated client",
            ),
            (
                syn::parse_quote!(
                    trait T {
                        async fn to_upper(&self);
                        #[qtalk(selector = "ToUpper")]
                        async fn other(&self);
                    }
                ),
                "is used by `to_upper` already",
            ),
            (
                syn::parse_quote!(
                    trait T {
                        #[qtalk(name = "x")]
                        async fn f(&self);
                    }
                ),
                "unknown option",
            ),
            (
                syn::parse_quote!(
                    trait T {
                        #[qtalk(selector = "")]
                        async fn f(&self);
                    }
                ),
                "cannot be empty",
            ),
        ];
        for (item, needle) in cases {
            let err = error_of(item);
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }

    #[test]
    fn generates_a_send_trait_a_client_and_into_mux() {
        let item: ItemTrait = syn::parse_quote!(
            pub trait Svc {
                async fn to_upper(&self, text: String) -> Result<String, String>;
            }
        );
        let out = expand(item).unwrap().to_string();
        assert!(out.contains("pub struct SvcClient"), "{out}");
        assert!(out.contains("fn into_mux"), "{out}");
        assert!(out.contains("\"ToUpper\""), "{out}");
        assert!(out.contains(":: core :: marker :: Send"), "{out}");
    }

    #[test]
    fn go_names() {
        assert_eq!(go_name("add"), "Add");
        assert_eq!(go_name("to_upper"), "ToUpper");
        assert_eq!(go_name("get_user_by_id"), "GetUserById");
        assert_eq!(go_name("_private"), "Private");
    }
}
