//! Command-line options of the gateway, shared by `rampart-gateway` and `rampart gateway`.

use crate::config::{ConfigError, GatewayConfig};
use std::path::PathBuf;

/// Options of a gateway process. Flags (or their environment variables) win over the config
/// file, which wins over the defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GatewayArgs {
    /// TOML config file; every key is optional.
    #[arg(long, env = "RAMPART_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Public REST address [default: 127.0.0.1:8080]; port 0 picks a free port.
    #[arg(long, env = "RAMPART_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Admin address for /health and /admin/backends [default: 127.0.0.1:9901].
    #[arg(long, env = "RAMPART_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,

    /// Worker endpoints, comma-separated [default: http://127.0.0.1:50051].
    #[arg(long, env = "RAMPART_WORKERS", value_name = "URL,URL...", value_delimiter = ',')]
    pub workers: Option<Vec<String>>,

    /// Job store: sqlite://PATH or postgres://USER:PASS@HOST/DB [default: sqlite://data/rampart.db].
    #[arg(long, env = "RAMPART_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// Stop when standard input closes (used by `rampart up` so the gateway never outlives it).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

impl GatewayArgs {
    /// The configuration these options give: defaults, then the file, then the flags.
    pub fn config(&self) -> Result<GatewayConfig, ConfigError> {
        let mut config = match &self.config {
            Some(path) => GatewayConfig::from_file(path)?,
            None => GatewayConfig::default(),
        };
        if let Some(listen) = &self.listen {
            config.listen.clone_from(listen);
        }
        if let Some(admin_listen) = &self.admin_listen {
            config.admin_listen.clone_from(admin_listen);
        }
        if let Some(workers) = &self.workers {
            config.workers = workers.iter().map(|url| url.trim().to_owned()).filter(|url| !url.is_empty()).collect();
        }
        if let Some(store) = &self.store {
            config.store.clone_from(store);
        }
        config.validate("flags")?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_defaults() {
        let args = GatewayArgs {
            listen: Some("127.0.0.1:0".into()),
            workers: Some(vec!["http://127.0.0.1:1".into(), " http://127.0.0.1:2 ".into()]),
            ..Default::default()
        };
        let config = args.config().unwrap();
        assert_eq!(config.listen, "127.0.0.1:0");
        assert_eq!(config.admin_listen, "127.0.0.1:9901");
        assert_eq!(config.workers, ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"listen = \"127.0.0.1:7000\"\nadmin_listen = \"127.0.0.1:7001\"\n")
            .unwrap();
        let args = GatewayArgs {
            config: Some(file.path().to_owned()),
            listen: Some("127.0.0.1:7100".into()),
            ..Default::default()
        };
        let config = args.config().unwrap();
        assert_eq!(config.listen, "127.0.0.1:7100");
        assert_eq!(config.admin_listen, "127.0.0.1:7001");
        assert_eq!(config.workers, GatewayConfig::default().workers);
    }

    #[test]
    fn bad_flag_values_are_refused() {
        let args = GatewayArgs { workers: Some(vec!["localhost".into()]), ..Default::default() };
        let error = args.config().unwrap_err().to_string();
        assert!(error.contains("flags") && error.contains("workers[0]"), "{error}");
    }
}
