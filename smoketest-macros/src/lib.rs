//! The `#[smoketest::check]` attribute. Use it through the `smoketest` crate; see
//! `smoketest::check` for the documentation.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::parse::Parser;
use syn::{Error, ItemFn, LitStr, spanned::Spanned};

/// Register an `async fn(&mut Context) -> smoketest::Result` as a smoke check.
///
/// Arguments (all optional): `name = "orders::db_write"` (default: the module path without
/// the crate name, plus the fn name), `tags = ["db", "write"]`, `timeout = "5s"`
/// (humantime syntax: `500ms`, `2s`, `1m`), `warn_after = "300ms"` (a latency budget: a
/// pass slower than it is reported as `warn` of kind `slow`), `personas = ["admin", "clerk"]`
/// (one check per persona, named `name[persona]`), and `crate = "path::to::smoketest"` when
/// the `smoketest` crate is renamed or re-exported.
#[proc_macro_attribute]
pub fn check(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let mut name: Option<LitStr> = None;
    let mut tags: Vec<LitStr> = Vec::new();
    let mut personas: Vec<LitStr> = Vec::new();
    let mut timeout_ms: Option<u64> = None;
    let mut warn_after_ms: Option<u64> = None;
    let mut krate: syn::Path = syn::parse_quote!(::smoketest);

    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            let lit: LitStr = meta.value()?.parse()?;
            if lit.value().is_empty() {
                return Err(Error::new(lit.span(), "a check name cannot be empty"));
            }
            name = Some(lit);
        } else if meta.path.is_ident("tags") {
            let value = meta.value()?;
            let content;
            syn::bracketed!(content in value);
            let list = content.parse_terminated(|p| p.parse::<LitStr>(), syn::Token![,])?;
            tags.extend(list);
        } else if meta.path.is_ident("personas") {
            let value = meta.value()?;
            let content;
            syn::bracketed!(content in value);
            let list = content.parse_terminated(|p| p.parse::<LitStr>(), syn::Token![,])?;
            for lit in list {
                let name = lit.value();
                if name.is_empty()
                    || name
                        .chars()
                        .any(|c| c.is_control() || c.is_whitespace() || "[]/?#".contains(c))
                {
                    return Err(Error::new(
                        lit.span(),
                        "a persona name must be non-empty, without white space or `[ ] / ? #`",
                    ));
                }
                if personas.iter().any(|p| p.value() == name) {
                    return Err(Error::new(
                        lit.span(),
                        format!("persona `{name}` is listed twice"),
                    ));
                }
                personas.push(lit);
            }
            if personas.is_empty() {
                return Err(meta.error("`personas` needs at least one persona name"));
            }
        } else if meta.path.is_ident("tag") {
            tags.push(meta.value()?.parse()?);
        } else if meta.path.is_ident("timeout") || meta.path.is_ident("warn_after") {
            let which = if meta.path.is_ident("timeout") {
                "timeout"
            } else {
                "warn_after"
            };
            let lit: LitStr = meta.value()?.parse()?;
            let d = humantime::parse_duration(&lit.value()).map_err(|e| {
                Error::new(
                    lit.span(),
                    format!("`{which}` must be a duration such as \"500ms\" or \"5s\": {e}"),
                )
            })?;
            if d.is_zero() {
                return Err(Error::new(
                    lit.span(),
                    format!("`{which}` must be longer than zero"),
                ));
            }
            let ms = Some(d.as_millis().max(1) as u64);
            if which == "timeout" {
                timeout_ms = ms;
            } else {
                warn_after_ms = ms;
            }
        } else if meta.path.is_ident("crate") {
            let lit: LitStr = meta.value()?.parse()?;
            krate = lit.parse()?;
        } else {
            return Err(meta.error(
                "unknown argument; expected `name = \"…\"`, `tags = [\"…\"]`, `timeout = \"5s\"`, `warn_after = \"300ms\"`, `personas = [\"…\"]` or `crate = \"…\"`",
            ));
        }
        Ok(())
    });
    parser.parse2(attr)?;

    let function: ItemFn = syn::parse2(item)?;
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        return Err(Error::new(
            sig.fn_token.span(),
            "#[smoketest::check] goes on an `async fn(ctx: &mut Context) -> smoketest::Result`",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(Error::new(
            sig.generics.span(),
            "a smoke check fn cannot be generic; implement `SmokeCheck` for a type instead",
        ));
    }
    if sig.inputs.len() != 1 {
        return Err(Error::new(
            sig.inputs.span(),
            "a smoke check fn takes exactly one argument: `ctx: &mut smoketest::Context`",
        ));
    }
    if let Some(receiver) = sig.receiver() {
        return Err(Error::new(
            receiver.span(),
            "a smoke check fn cannot take `self`; implement `SmokeCheck` for the type instead",
        ));
    }

    let ident = &sig.ident;
    let function_name = ident.to_string();
    let name = match name {
        Some(lit) => quote!(::core::option::Option::Some(#lit)),
        None => quote!(::core::option::Option::None),
    };
    let timeout = match timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let warn_after = match warn_after_ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let runner = syn::Ident::new(
        &format!("__smoketest_run_{function_name}"),
        Span::call_site(),
    );

    Ok(quote! {
        #function

        #[doc(hidden)]
        #[allow(non_snake_case)]
        fn #runner<'a>(ctx: &'a mut #krate::Context) -> #krate::CheckFuture<'a> {
            ::std::boxed::Box::pin(async move {
                match #ident(ctx).await {
                    ::core::result::Result::Ok(outcome) => {
                        ::core::result::Result::Ok(#krate::Outcome::from(outcome))
                    }
                    ::core::result::Result::Err(error) => {
                        ::core::result::Result::Err(#krate::CheckError::from(error))
                    }
                }
            })
        }

        #krate::__private::inventory::submit! {
            #krate::__private::Registration {
                name: #name,
                module: ::core::module_path!(),
                function: #function_name,
                tags: &[#(#tags),*],
                timeout_ms: #timeout,
                warn_after_ms: #warn_after,
                personas: &[#(#personas),*],
                file: ::core::file!(),
                line: ::core::line!(),
                run: #runner,
            }
        }
    })
}
