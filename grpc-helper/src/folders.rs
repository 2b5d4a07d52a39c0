//! The three folders of a server: system (read only), user and workspace (created on first
//! write). Configuration and state files are looked up there.

use std::path::{Path, PathBuf};

/// Where a server reads configuration and keeps its state.
///
/// ```
/// use grpc_helper::Folders;
///
/// let folders = Folders::default().workspace("/tmp/my-service");
/// assert_eq!(folders.workspace_dir().unwrap().to_str(), Some("/tmp/my-service"));
/// assert!(folders.system_dir().is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folders {
    system: Option<PathBuf>,
    user: Option<PathBuf>,
    workspace: Option<PathBuf>,
}

impl Folders {
    /// The system folder (e.g. `/etc/grpc_helper`), read only.
    ///
    /// ```
    /// let folders = grpc_helper::Folders::default().system("/etc/my-service");
    /// assert_eq!(folders.system_dir(), Some(std::path::Path::new("/etc/my-service")));
    /// ```
    pub fn system(mut self, path: impl Into<PathBuf>) -> Self {
        self.system = Some(path.into());
        self
    }

    /// The user folder (e.g. `~/.config/grpc_helper`).
    ///
    /// ```
    /// let folders = grpc_helper::Folders::default().user("/home/me/.config/my-service");
    /// assert!(folders.user_dir().is_some());
    /// ```
    pub fn user(mut self, path: impl Into<PathBuf>) -> Self {
        self.user = Some(path.into());
        self
    }

    /// The workspace folder, where state is persisted (e.g. `./grpc_helper`).
    ///
    /// ```
    /// let folders = grpc_helper::Folders::default().workspace("./my-service");
    /// assert_eq!(folders.workspace_dir().unwrap().join("config.json").to_str(), Some("./my-service/config.json"));
    /// ```
    pub fn workspace(mut self, path: impl Into<PathBuf>) -> Self {
        self.workspace = Some(path.into());
        self
    }

    /// The system folder, if any.
    ///
    /// ```
    /// assert_eq!(grpc_helper::Folders::default().system_dir(), None);
    /// ```
    pub fn system_dir(&self) -> Option<&Path> {
        self.system.as_deref()
    }

    /// The user folder, if any.
    ///
    /// ```
    /// let folders = grpc_helper::Folders::default().user("/home/me/.config/my-service");
    /// let user_config = folders.user_dir().map(|dir| dir.join("config.json"));
    /// assert_eq!(user_config.unwrap().to_str(), Some("/home/me/.config/my-service/config.json"));
    /// ```
    pub fn user_dir(&self) -> Option<&Path> {
        self.user.as_deref()
    }

    /// The workspace folder, if any.
    ///
    /// ```
    /// let folders = grpc_helper::Folders::default();
    /// assert!(folders.workspace_dir().is_none()); // nothing is persisted
    /// ```
    pub fn workspace_dir(&self) -> Option<&Path> {
        self.workspace.as_deref()
    }
}
