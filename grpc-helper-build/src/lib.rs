//! Proto compilation for grpc-helper services, in build scripts, with no system `protoc`.
//!
//! [`compile`] parses `.proto` files with the pure-Rust compiler `protox` and generates
//! prost messages and tonic servers wired for grpc-helper:
//! - services get default stubs, so methods a manager does not implement answer `UNIMPLEMENTED`;
//! - every message derives `grpc_helper::RpcMessage` (in-band `r: Result` errors), every enum
//!   named `*ApiVersion` derives `grpc_helper::ApiVersion`;
//! - each service's server module gets a hidden `methods` module: a marker type per method,
//!   naming its request and reply, which `#[rpc_manager]` checks a manager's methods against;
//! - the built-in API files (`grpc_helper_api/*.proto`) are importable without having them on
//!   disk, and their types resolve to `grpc_helper::api`;
//! - the encoded descriptor set is written for server reflection.
//!
//! In `Cargo.toml`, `grpc-helper-build = "0.1"` in `[build-dependencies]`; in `build.rs`:
//! ```no_run
//! grpc_helper_build::compile(&["proto/my.proto"], &["proto"]).unwrap();
//! ```
//! Then, in the crate: `grpc_helper::include_protos!();`. (`grpc_helper::build` is this crate,
//! with grpc-helper's `build` feature; depending on this crate directly builds faster: the
//! build script then does not build grpc-helper's runtime a second time.)

use std::fmt;
use std::path::{Path, PathBuf};

use prost_types::FileDescriptorSet;

/// Name of the generated file that `grpc_helper::include_protos!` includes.
///
/// ```
/// let generated = std::path::Path::new("target/debug/build/my-crate-1234/out").join(grpc_helper_build::INCLUDE_FILE);
/// assert!(generated.ends_with("grpc_helper_protos.rs"));
/// ```
pub const INCLUDE_FILE: &str = "grpc_helper_protos.rs";
/// Name of the encoded `FileDescriptorSet` written next to the generated code.
///
/// ```no_run
/// // What `include_descriptor_set!()` reads, spelled out:
/// let out_dir = std::env::var_os("OUT_DIR").expect("in a build script, or a crate with one");
/// let descriptors = std::fs::read(std::path::Path::new(&out_dir).join(grpc_helper_build::DESCRIPTOR_SET_FILE));
/// ```
pub const DESCRIPTOR_SET_FILE: &str = "grpc_helper_descriptor.bin";

/// Folder of the built-in API files, as imported by user protos.
const API_DIR: &str = "grpc_helper_api";

/// The built-in API files, embedded so that user builds need no copy of them.
const API_FILES: [(&str, &str); 5] = [
    ("grpc_helper_api/common.proto", include_str!("../proto/grpc_helper_api/common.proto")),
    ("grpc_helper_api/server.proto", include_str!("../proto/grpc_helper_api/server.proto")),
    ("grpc_helper_api/config.proto", include_str!("../proto/grpc_helper_api/config.proto")),
    ("grpc_helper_api/logger.proto", include_str!("../proto/grpc_helper_api/logger.proto")),
    ("grpc_helper_api/events.proto", include_str!("../proto/grpc_helper_api/events.proto")),
];

/// Why proto compilation failed.
///
/// ```
/// let out = tempfile::tempdir()?;
/// let error = grpc_helper_build::Builder::new().out_dir(out.path()).compile(&["missing.proto"], &["."]).unwrap_err();
/// assert!(error.to_string().contains("missing.proto"), "{error}");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct BuildError(String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// Compiles `protos` (searched in `includes`) into `$OUT_DIR`, ready for
/// `grpc_helper::include_protos!`.
///
/// # Errors
/// A [`BuildError`] with the compiler's message (file, line, what is wrong) when a file is
/// missing or invalid, or when the output cannot be written.
///
/// ```no_run
/// grpc_helper_build::compile(&["proto/my.proto"], &["proto"]).unwrap();
/// ```
pub fn compile(protos: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> Result<(), BuildError> {
    Builder::new().compile(protos, includes)
}

/// Configurable form of [`compile`].
///
/// ```no_run
/// grpc_helper_build::Builder::new()
///     .out_dir("src/generated")
///     .compile(&["proto/my.proto"], &["proto"])
///     .unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    out_dir: Option<PathBuf>,
    /// Rust path of the built-in API types; `None` generates them (grpc-helper itself).
    api_path: Option<String>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// A builder for user crates: built-in API types resolve to `::grpc_helper::api`.
    ///
    /// ```no_run
    /// // build.rs
    /// fn main() -> Result<(), grpc_helper_build::BuildError> {
    ///     grpc_helper_build::Builder::new().compile(&["proto/my.proto"], &["proto"])
    /// }
    /// ```
    pub fn new() -> Self {
        Self { out_dir: None, api_path: Some("::grpc_helper::api".to_owned()) }
    }

    /// Generates the built-in API types themselves (used by grpc-helper's own build).
    #[doc(hidden)]
    pub fn generate_api(mut self) -> Self {
        self.api_path = None;
        self
    }

    /// Writes the generated files here instead of `$OUT_DIR`.
    ///
    /// ```no_run
    /// let builder = grpc_helper_build::Builder::new().out_dir("src/generated");
    /// ```
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Compiles `protos`, searched in `includes` (and the embedded `grpc_helper_api/` files).
    ///
    /// # Errors
    /// See [`compile`].
    ///
    /// ```
    /// use grpc_helper_build::{Builder, DESCRIPTOR_SET_FILE, INCLUDE_FILE};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let proto = "syntax = \"proto3\";\nimport \"grpc_helper_api/common.proto\";\n\
    ///              message Ping { Result r = 1; }\nservice PingService { rpc ping(Empty) returns (Ping); }\n";
    /// std::fs::write(dir.path().join("ping.proto"), proto)?;
    /// Builder::new().out_dir(dir.path()).compile(&["ping.proto"], &[dir.path()]).unwrap();
    /// assert!(dir.path().join(INCLUDE_FILE).exists() && dir.path().join(DESCRIPTOR_SET_FILE).exists());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn compile(&self, protos: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> Result<(), BuildError> {
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR").map(PathBuf::from).ok_or_else(|| {
                BuildError("OUT_DIR is not set: call this from a build script, or set out_dir()".into())
            })?,
        };
        self.generate(&out_dir, protos, includes)
    }

    fn generate(
        &self,
        out_dir: &Path,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(), BuildError> {
        let fds = parse(protos, includes)?;
        std::fs::write(out_dir.join(DESCRIPTOR_SET_FILE), prost::Message::encode_to_vec(&fds))
            .map_err(|e| BuildError(format!("cannot write {DESCRIPTOR_SET_FILE} in {}: {e}", out_dir.display())))?;

        let mut builder = tonic_prost_build::configure()
            .out_dir(out_dir)
            .include_file(INCLUDE_FILE)
            .generate_default_stubs(true)
            .codec_path("::grpc_helper::__private::Codec")
            .message_attribute(".", "#[derive(::grpc_helper::RpcMessage)]");
        for name in api_version_enums(&fds) {
            builder = builder.enum_attribute(&name, "#[derive(::grpc_helper::ApiVersion)]");
        }
        if let Some(api_path) = &self.api_path {
            for (proto, rust) in api_extern_paths(&fds, api_path) {
                builder = builder.extern_path(proto, rust);
            }
        }
        // tonic's generator, wrapped to name each method's request and reply types (what
        // #[rpc_manager] checks a manager's signatures against).
        let mut config = prost_build::Config::new();
        config.service_generator(Box::new(WithMethods(builder.clone().service_generator())));
        builder
            .build_client(false)
            .build_server(false)
            .compile_fds_with_config(fds, config)
            .map_err(|e| BuildError(format!("code generation failed: {e}")))?;
        for include in includes {
            println!("cargo:rerun-if-changed={}", include.as_ref().display());
        }
        Ok(())
    }
}

/// Adds to tonic's server module of each service a hidden `methods` module: one marker type per
/// method, naming its request and reply types (what `#[rpc_manager]` checks a manager against).
struct WithMethods(Box<dyn prost_build::ServiceGenerator>);

impl prost_build::ServiceGenerator for WithMethods {
    fn generate(&mut self, service: prost_build::Service, buf: &mut String) {
        let start = buf.len();
        let methods: Vec<_> = service
            .methods
            .iter()
            .map(|m| {
                // prost names types from the package's module; the server module is inside it.
                let outer = |t: &str| match t.starts_with("::") || t.starts_with("crate::") {
                    true => t.to_owned(),
                    false => format!("super::{t}"),
                };
                let request = match m.client_streaming {
                    true => format!("::grpc_helper::__private::tonic::Streaming<{}>", outer(&m.input_type)),
                    false => outer(&m.input_type),
                };
                MethodTypes {
                    name: m.name.clone(),
                    request,
                    reply: outer(&m.output_type),
                    server_streaming: m.server_streaming,
                }
            })
            .collect();
        let module = format!("{}_server", snake_case(&service.name));
        self.0.generate(service, buf);
        let mut generated = buf.split_off(start);
        insert_methods(&mut generated, &module, &methods);
        buf.push_str(&generated);
    }

    fn finalize(&mut self, buf: &mut String) {
        self.0.finalize(buf);
    }

    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        self.0.finalize_package(package, buf);
    }
}

/// The module tonic names after a service (its `naive_snake_case`): `SampleService` → `sample_service`.
fn snake_case(name: &str) -> String {
    let mut module = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        module.push(c.to_ascii_lowercase());
        if chars.peek().is_some_and(|next| next.is_uppercase()) {
            module.push('_');
        }
    }
    module
}

/// One method of a service, with its types as tonic writes them in the service's server module.
#[doc(hidden)]
pub struct MethodTypes {
    pub name: String,
    /// `Req`, or `Streaming<Req>` for a client stream.
    pub request: String,
    /// The reply, or the item of a server stream.
    pub reply: String,
    pub server_streaming: bool,
}

/// Writes, at the end of `pub mod {module}` (tonic's code for one service ends there), a hidden
/// `methods` module with a marker type per method, and the marker's `Method` impl with its
/// `Unary` or `Streaming` kind. Panics if tonic's output has no such module: the build script
/// then says so, rather than the macro failing later with no reason.
#[doc(hidden)]
pub fn insert_methods(code: &mut String, module: &str, methods: &[MethodTypes]) {
    use std::fmt::Write as _;
    const PRIVATE: &str = "::grpc_helper::__private";
    let mut items = String::from("#[doc(hidden)] #[allow(non_camel_case_types)] pub mod methods { ");
    for method in methods {
        let _ = write!(items, "pub enum {} {{}} ", method.name);
    }
    items.push_str("} ");
    for MethodTypes { name, request, reply, server_streaming } in methods {
        let (response, kind) = match server_streaming {
            true => (format!("{PRIVATE}::BoxStream<{reply}>"), "Streaming"),
            false => (reply.clone(), "Unary"),
        };
        let _ = write!(
            items,
            "#[diagnostic::do_not_recommend] impl {PRIVATE}::Method for methods::{name} {{ type Request = {request}; \
             type Reply = {reply}; type Response = {response}; }} \
             #[diagnostic::do_not_recommend] impl {PRIVATE}::{kind} for methods::{name} {{ \
             fn response(r: {response}) -> {response} {{ r }} }} "
        );
    }
    let header = format!("pub mod {module} {{");
    let end = code.rfind('}').filter(|_| code.contains(&header));
    let end = end.unwrap_or_else(|| panic!("tonic generated no `{header}`"));
    code.insert_str(end, &items);
}

/// Parses the files into a descriptor set that includes every import (reflection needs them).
fn parse(protos: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> Result<FileDescriptorSet, BuildError> {
    use protox::file::{ChainFileResolver, GoogleFileResolver, IncludeFileResolver};
    let mut resolver = ChainFileResolver::new();
    for include in includes {
        resolver.add(IncludeFileResolver::new(include.as_ref().to_owned()));
    }
    resolver.add(EmbeddedApi);
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(true);
    for proto in protos {
        compiler.open_file(proto.as_ref()).map_err(|e| BuildError(format!("{e:?}")))?;
    }
    Ok(compiler.file_descriptor_set())
}

/// Serves the embedded built-in API files when they are not found in an include folder.
struct EmbeddedApi;

impl protox::file::FileResolver for EmbeddedApi {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match API_FILES.iter().find(|(file, _)| *file == name) {
            Some((file, source)) => protox::file::File::from_source(file, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Fully-qualified names of the enums that describe an API version (`.Pkg.SampleApiVersion`).
fn api_version_enums(fds: &FileDescriptorSet) -> Vec<String> {
    let mut names = Vec::new();
    for file in &fds.file {
        let prefix = match file.package() {
            "" => String::new(),
            package => format!(".{package}"),
        };
        for e in &file.enum_type {
            if e.name().ends_with("ApiVersion") {
                names.push(format!("{prefix}.{}", e.name()));
            }
        }
    }
    names
}

/// Maps every type of the built-in API files to its Rust path under `api_path`.
fn api_extern_paths(fds: &FileDescriptorSet, api_path: &str) -> Vec<(String, String)> {
    fds.file
        .iter()
        .filter(|file| file.name().starts_with(API_DIR))
        .flat_map(|file| {
            let messages = file.message_type.iter().map(|m| m.name().to_owned());
            let enums = file.enum_type.iter().map(|e| e.name().to_owned());
            messages.chain(enums).collect::<Vec<_>>()
        })
        .map(|name| (format!(".{name}"), format!("{api_path}::{name}")))
        .collect()
}
