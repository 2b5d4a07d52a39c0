//! Validation: turns the parsed block into a model the expansion can trust.

use proc_macro2::Span;
use syn::{FnArg, GenericArgument, ImplItemFn, ItemImpl, Path, PathArguments, ReturnType, Type};

use super::parse::{HookKind, Parsed};
use crate::errors::Errors;

pub struct Model {
    pub item: ItemImpl,
    pub self_ident: syn::Ident,
    pub service: syn::LitStr,
    pub version: Path,
    pub grpc: Grpc,
    pub krate: Path,
    pub rpcs: Vec<Rpc>,
    pub load: Option<Hook>,
    pub shutdown: Option<Hook>,
}

/// The tonic trait the manager implements.
pub enum Grpc {
    /// `grpc = module::Trait`, as written.
    Given(Path),
    /// Derived from the version's name: the module (`path::x_service_server`) and the trait
    /// (`XService`), spanned at the version so that a missing one is reported there.
    Conventional { module: Path, service: syn::Ident },
}

pub struct Rpc {
    pub name: syn::Ident,
    pub request: Type,
    pub reply: Reply,
    pub takes_context: bool,
}

pub enum Reply {
    Unary(Type),
    Stream(Type),
}

pub struct Hook {
    pub name: syn::Ident,
    pub takes_context: bool,
}

pub fn check(parsed: Parsed, errors: &mut Errors) -> Option<Model> {
    let Parsed { args, item, methods, attr_span } = parsed;
    let service = args.service.or_else(|| {
        errors.push(syn::Error::new(
            attr_span,
            "missing `service = \"...\"`: the short service name shown by `info`, e.g. `service = \"my\"`",
        ));
        None
    });
    if let Some(s) = &service {
        let name = s.value();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            errors.spanned(s, "`service` must be a non-empty name of letters, digits, `-` or `_`");
        }
    }
    let version = args.version.or_else(|| {
        errors.push(syn::Error::new(
            attr_span,
            "missing `version = ...`: the enum deriving ApiVersion, e.g. `version = MyApiVersion`",
        ));
        None
    });
    if let Some(path) = args.grpc.as_ref().filter(|p| p.segments.len() < 2) {
        errors.spanned(
            path,
            "write the generated trait with its module, e.g. `grpc = my_service_server::MyService`: \
             the server type `MyServiceServer` is taken from the same module",
        );
    }
    let grpc = match (args.grpc, &version) {
        (Some(path), _) => Some(Grpc::Given(path)),
        (None, Some(version)) => conventional_grpc(version, errors),
        (None, None) => None,
    };
    let krate = args.krate.unwrap_or_else(|| syn::parse_quote!(::grpc_helper));

    let self_ident = manager_ident(&item, errors);
    let mut rpcs = Vec::new();
    let mut load: Option<(Hook, Span)> = None;
    let mut shutdown: Option<(Hook, Span)> = None;
    for (method, hook) in &methods {
        match hook {
            Some((kind, attr)) => {
                let Some(parsed_hook) = check_hook(method, errors) else { continue };
                let slot = match kind {
                    HookKind::Load => &mut load,
                    HookKind::Shutdown => &mut shutdown,
                };
                if slot.is_some() {
                    errors.spanned(attr, "this hook is already defined by another method of this impl block");
                } else {
                    *slot = Some((parsed_hook, method.sig.ident.span()));
                }
            }
            None => {
                if let Some(rpc) = check_rpc(method, errors) {
                    rpcs.push(rpc);
                }
            }
        }
    }
    Some(Model {
        item,
        self_ident: self_ident?,
        service: service?,
        version: version?,
        grpc: grpc?,
        krate,
        rpcs,
        load: load.map(|(h, _)| h),
        shutdown: shutdown.map(|(h, _)| h),
    })
}

/// `path::XApiVersion` → `path::x_service_server` and `XService`, as tonic names them.
fn conventional_grpc(version: &Path, errors: &mut Errors) -> Option<Grpc> {
    let last = version.segments.last()?;
    let name = last.ident.to_string();
    let Some(base) = name.strip_suffix("ApiVersion").filter(|b| !b.is_empty()) else {
        errors.spanned(
            version,
            format!(
                "`{name}` does not name its service (`XApiVersion` serves `x_service_server::XService`): \
                 write the generated tonic trait, e.g. `grpc = my_service_server::MyService`"
            ),
        );
        return None;
    };
    let span = last.ident.span();
    let service = syn::Ident::new(&format!("{base}Service"), span);
    let mut module = version.clone();
    if let Some(last) = module.segments.last_mut() {
        *last = syn::PathSegment::from(syn::Ident::new(&format!("{}_server", snake_case(&service.to_string())), span));
    }
    Some(Grpc::Conventional { module, service })
}

/// `SampleService` → `sample_service`: an underscore before every capital but the first, as
/// tonic names the module of a service.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn manager_ident(item: &ItemImpl, errors: &mut Errors) -> Option<syn::Ident> {
    if let Some((_, path, _)) = &item.trait_ {
        errors.spanned(path, "#[rpc_manager] goes on an inherent impl (`impl MyManager`), not a trait impl");
        return None;
    }
    if !item.generics.params.is_empty() {
        errors.spanned(&item.generics, "a manager cannot be generic: host one concrete type per service");
        return None;
    }
    match &*item.self_ty {
        Type::Path(p) if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.arguments.is_none()) => {
            p.path.segments.last().map(|s| s.ident.clone())
        }
        other => {
            errors.spanned(other, "a manager must be a plain named type, e.g. `impl MyManager`");
            None
        }
    }
}

/// Checks `async fn name(&self, ...)` and returns the typed arguments after `&self`.
fn typed_args<'a>(method: &'a ImplItemFn, what: &str, errors: &mut Errors) -> Option<Vec<&'a syn::PatType>> {
    let sig = &method.sig;
    let mut ok = true;
    if sig.asyncness.is_none() {
        let message = if what == RPC {
            // Every fn of the block is served: a plain fn is most often a helper.
            format!("{what} must be `async fn`; put helper methods in a separate `impl` block")
        } else {
            format!("{what} must be `async fn`")
        };
        errors.spanned(sig.fn_token, message);
        ok = false;
    }
    if !sig.generics.params.is_empty() {
        errors.spanned(&sig.generics, format!("{what} cannot be generic"));
        ok = false;
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(FnArg::Receiver(r)) => {
            errors.spanned(r, format!("{what} takes `&self` (managers are shared between concurrent calls)"));
            ok = false;
        }
        _ => {
            errors.spanned(&sig.ident, format!("{what} takes `&self` first"));
            ok = false;
        }
    }
    let typed: Vec<_> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect();
    ok.then_some(typed)
}

/// What the messages call a served method.
const RPC: &str = "an RPC method";

fn check_rpc(method: &ImplItemFn, errors: &mut Errors) -> Option<Rpc> {
    let sig = &method.sig;
    let args = typed_args(method, RPC, errors);
    let reply = match &sig.output {
        ReturnType::Type(_, ty) if stream_item(ty).is_some() => {
            errors.spanned(
                ty,
                "a streaming reply is `Result<ReplyStream<Item>, RpcError>`: return `Ok(stream)`, \
                 so that an error before the first item reaches the caller",
            );
            None
        }
        ReturnType::Default => {
            errors.spanned(
                &sig.ident,
                "an RPC method returns `Result<Reply, RpcError>` (or `Result<ReplyStream<Item>, RpcError>`)",
            );
            None
        }
        ReturnType::Type(_, ty) => match first_type_arg(ty) {
            Some(reply) => Some(match stream_item(reply) {
                Some(item) => Reply::Stream(item.clone()),
                None => Reply::Unary(reply.clone()),
            }),
            None => {
                errors.spanned(
                    ty,
                    "an RPC method returns `Result<Reply, RpcError>` (or `Result<ReplyStream<Item>, RpcError>`)",
                );
                None
            }
        },
    };
    let args = args?;
    if args.is_empty() || args.len() > 2 {
        errors.spanned(
            &sig.inputs,
            format!(
                "an RPC method takes the request, and optionally the call context: \
                 `(&self, request: Req)` or `(&self, request: Req, cx: CallContext)`; found {} argument(s) after `&self`",
                args.len()
            ),
        );
        return None;
    }
    if let Some(cx) = args.get(1)
        && let Type::Reference(reference) = &*cx.ty
        && last_ident_is(&reference.elem, "CallContext")
    {
        errors.spanned(&cx.ty, "take the call context by value: `cx: CallContext` (each call gets its own)");
        return None;
    }
    if let Type::Reference(reference) = &*args[0].ty {
        errors.spanned(
            reference,
            "an RPC method takes its request by value: `request: Req` (or `Streaming<Req>` for a client stream)",
        );
        return None;
    }
    Some(Rpc { name: sig.ident.clone(), request: (*args[0].ty).clone(), reply: reply?, takes_context: args.len() == 2 })
}

fn check_hook(method: &ImplItemFn, errors: &mut Errors) -> Option<Hook> {
    let args = typed_args(method, "a hook", errors)?;
    if args.len() > 1 {
        errors.spanned(&method.sig.inputs, "a hook takes `&self` and optionally `cx: &ManagerContext`");
        return None;
    }
    if let Some(cx) = args.first()
        && !matches!(&*cx.ty, Type::Reference(_))
    {
        errors.spanned(&cx.ty, "a hook borrows the manager's context: `cx: &ManagerContext`");
        return None;
    }
    Some(Hook { name: method.sig.ident.clone(), takes_context: args.len() == 1 })
}

/// `Result<T, E>` (or any alias `X<T, ...>`) → `T`.
fn first_type_arg(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let PathArguments::AngleBracketed(args) = &p.path.segments.last()?.arguments else { return None };
    args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}

/// Whether a type's path ends in `name` (`CallContext`, `grpc_helper::CallContext`).
fn last_ident_is(ty: &Type, name: &str) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == name))
}

/// `ReplyStream<T>` → `T`.
fn stream_item(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "ReplyStream" {
        return None;
    }
    first_type_arg(ty)
}
