//! Code generation: the tonic trait impl on a hidden wrapper, and the `Manager` impl.
//! Each generated body is one call into `grpc_helper::__private`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::check::{Hook, Model, Reply, Rpc};

pub fn expand(model: &Model) -> TokenStream {
    let Model { item, self_ident, service, version, grpc, krate, rpcs, load, shutdown } = model;
    let wrapper = format_ident!("__{}RpcService", self_ident);
    let mut server = grpc.clone();
    if let Some(last) = server.segments.last_mut() {
        last.ident = format_ident!("{}Server", last.ident);
    }
    let methods = rpcs.iter().map(|rpc| rpc_method(rpc, krate));
    let load = load.as_ref().map(|hook| hook_method(hook, krate, quote!(on_load), quote!(::core::result::Result<(), #krate::RpcError>)));
    let shutdown = shutdown.as_ref().map(|hook| hook_method(hook, krate, quote!(on_shutdown), quote!(())));

    quote! {
        #item

        #[doc(hidden)]
        pub struct #wrapper(::std::sync::Arc<#krate::__private::Hosted<#self_ident>>);

        #[#krate::__private::async_trait]
        impl #grpc for #wrapper {
            #(#methods)*
        }

        impl #krate::Manager for #self_ident {
            type Version = #version;
            const SERVICE: &'static str = #service;
            const COMPONENT: &'static str = ::core::concat!(::core::env!("CARGO_PKG_NAME"), ":", ::core::env!("CARGO_PKG_VERSION"));

            fn route(
                hosted: ::std::sync::Arc<#krate::__private::Hosted<Self>>,
                limits: &#krate::__private::MessageLimits,
            ) -> #krate::__private::ServiceRoute {
                #krate::__private::route(
                    #server::new(#wrapper(hosted))
                        .max_decoding_message_size(limits.max_decoding)
                        .max_encoding_message_size(limits.max_encoding),
                )
            }

            #load
            #shutdown
        }
    }
}

fn rpc_method(rpc: &Rpc, krate: &syn::Path) -> TokenStream {
    let Rpc { name, request, reply, takes_context } = rpc;
    let call = if *takes_context { quote!(manager.#name(request, cx)) } else { quote!(manager.#name(request)) };
    let method = name.to_string();
    match reply {
        Reply::Unary(reply) => quote! {
            async fn #name(
                &self,
                request: #krate::__private::tonic::Request<#request>,
            ) -> ::core::result::Result<#krate::__private::tonic::Response<#reply>, #krate::__private::tonic::Status> {
                #krate::__private::unary(&self.0, request, #method, |manager, request, cx| #call).await
            }
        },
        Reply::Stream(item) => quote! {
            async fn #name(
                &self,
                request: #krate::__private::tonic::Request<#request>,
            ) -> ::core::result::Result<
                #krate::__private::tonic::Response<#krate::__private::BoxStream<#item>>,
                #krate::__private::tonic::Status,
            > {
                #krate::__private::server_streaming(&self.0, request, #method, |manager, request, cx| #call).await
            }
        },
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
