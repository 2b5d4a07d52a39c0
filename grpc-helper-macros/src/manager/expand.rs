//! Code generation: the tonic trait impl on a hidden wrapper, the `Manager` impl, and the
//! hidden `Routable` impl that builds the route.
//! Each generated body is one call into `grpc_helper::__private`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::check::{Grpc, Hook, Model, Reply, Rpc};

pub fn expand(model: &Model) -> TokenStream {
    let Model { item, self_ident, service, version, grpc, krate, rpcs, load, shutdown } = model;
    let wrapper = format_ident!("__{}RpcService", self_ident);
    // A derived trait is reached through one import, so that a missing module is one error.
    let (import, grpc) = match grpc {
        Grpc::Given(path) => (None, path.clone()),
        Grpc::Conventional { module, service } => {
            let alias = format_ident!("__{}_grpc", self_ident, span = service.span());
            (Some(quote!(#[doc(hidden)] use #module as #alias;)), syn::parse_quote!(#alias::#service))
        }
    };
    // The trait's module holds its server and the `methods` that build::compile writes.
    let mut module = grpc.clone();
    module.segments.pop();
    module.segments.pop_punct();
    let mut server = grpc.clone();
    if let Some(last) = server.segments.last_mut() {
        last.ident = format_ident!("{}Server", last.ident);
    }
    let methods = rpcs.iter().map(|rpc| rpc_method(rpc, krate, &module));
    let load = load
        .as_ref()
        .map(|hook| hook_method(hook, krate, quote!(on_load), quote!(::core::result::Result<(), #krate::RpcError>)));
    let shutdown = shutdown.as_ref().map(|hook| hook_method(hook, krate, quote!(on_shutdown), quote!(())));

    quote! {
        #item

        #import

        #[doc(hidden)]
        pub struct #wrapper(::std::sync::Arc<#krate::__private::Hosted<#self_ident>>);

        impl #grpc for #wrapper {
            #(#methods)*
        }

        impl #krate::Manager for #self_ident {
            type Version = #version;
            const SERVICE: &'static str = #service;
            const COMPONENT: &'static str = ::core::concat!(::core::env!("CARGO_PKG_NAME"), ":", ::core::env!("CARGO_PKG_VERSION"));

            #load
            #shutdown
        }

        impl #krate::__private::Routable for #self_ident {
            const GRPC_NAME: &'static str =
                <#server<#wrapper> as #krate::__private::tonic::server::NamedService>::NAME;

            fn route(
                hosted: ::std::sync::Arc<#krate::__private::Hosted<Self>>,
                limits: &#krate::__private::MessageLimits,
                compression: &#krate::__private::Compression,
            ) -> #krate::__private::ServiceRoute {
                let server = #server::new(#wrapper(hosted))
                    .max_decoding_message_size(limits.max_decoding)
                    .max_encoding_message_size(limits.max_encoding);
                #krate::__private::route(#krate::__private::compressed(
                    server,
                    compression,
                    #server::accept_compressed,
                    #server::send_compressed,
                ))
            }
        }
    }
}

fn rpc_method(rpc: &Rpc, krate: &syn::Path, module: &syn::Path) -> TokenStream {
    let Rpc { name, request, reply, takes_context } = rpc;
    let method = name.to_string();
    // The proto's types, from the method's marker: every token at the method's name, so that a
    // method missing from the proto is one error there (rustc reports each span once).
    let method_type = respan(quote!(#module::methods::#name), name.span());
    let marker = respan(quote!(<#method_type as #krate::__private::Method>), name.span());
    let proto = respan(quote!(#marker::Request), name.span());
    let response = respan(quote!(#marker::Response), name.span());
    // The trait takes the proto's types; the manager's own must be those, which the
    // conversions check at the user's types (with messages of ours).
    let from_proto =
        quote_spanned!(request.span()=> <#request as #krate::__private::FromProtoRequest<#proto>>::from_proto(request));
    let call = if *takes_context {
        quote_spanned!(request.span()=> |manager, request, cx| manager.#name(#from_proto, cx))
    } else {
        quote_spanned!(request.span()=> |manager, request, _| manager.#name(#from_proto))
    };
    let tonic = quote!(#krate::__private::tonic);
    let (user_reply, dispatch) = match reply {
        Reply::Unary(reply) => (reply, quote!(unary)),
        Reply::Stream(item) => (item, quote!(server_streaming)),
    };
    // Named at the user's reply type, for the method's marker: a reply other than the proto's,
    // or a stream for a unary method (and back), is reported there. (The marker keeps the
    // method's span: a method missing from the proto is reported there only.)
    let at_reply = |tokens: TokenStream| {
        let mut group = proc_macro2::Group::new(proc_macro2::Delimiter::Parenthesis, tokens);
        group.set_span(user_reply.span());
        group
    };
    let dispatch = respan(quote!(#krate::__private::#dispatch), user_reply.span());
    let phantom = respan(quote!(::core::marker::PhantomData::<), user_reply.span());
    let close = respan(quote!(>), user_reply.span());
    let marker_value = quote!(#phantom #method_type #close);
    let args = at_reply(quote!(#marker_value, &self.0, request, #method, snapshot, #call));
    let boxed = respan(quote!(::std::boxed::Box::pin), user_reply.span());
    let body = at_reply(quote!(#dispatch #args));
    quote_spanned! {name.span()=>
        fn #name<'life0, 'async_trait>(
            &'life0 self,
            request: #tonic::Request<#proto>,
        ) -> ::core::pin::Pin<::std::boxed::Box<
            dyn ::core::future::Future<Output = ::core::result::Result<#tonic::Response<#response>, #tonic::Status>>
                + ::core::marker::Send
                + 'async_trait,
        >>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            #[allow(unused_imports)] // one of the two applies
            use #krate::__private::{SnapshotByClone as _, SnapshotNone as _};
            // A clone of the request for the debug dump, or none for a client stream.
            #[allow(clippy::needless_borrow)] // the borrows pick the impl
            let snapshot = (&&#krate::__private::Probe::<#proto>::new()).snapshot_fn();
            #boxed #body
        }
    }
}

fn hook_method(hook: &Hook, krate: &syn::Path, trait_fn: TokenStream, output: TokenStream) -> TokenStream {
    let name = &hook.name;
    let call = if hook.takes_context { quote!(self.#name(cx)) } else { quote!(self.#name()) };
    quote! {
        fn #trait_fn<'a>(
            &'a self,
            cx: &'a #krate::ManagerContext,
        ) -> #krate::__private::BoxFuture<'a, #output> {
            let _ = cx;
            ::std::boxed::Box::pin(async move { #krate::__private::hook_output::<#output, _>(#call.await) })
        }
    }
}

/// The same tokens, all pointing at `span` (so that rustc reports errors there).
fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let proc_macro2::TokenTree::Group(group) = &token {
                let mut inner = proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = proc_macro2::TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}
