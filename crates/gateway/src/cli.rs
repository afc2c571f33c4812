//! Command-line options of the gateway, shared by `rampart-gateway` and `rampart gateway`.

use crate::config::{
    ConfigError, GatewayConfig,
    layers::{self, Override, Source},
};
use std::path::PathBuf;

/// Options of a gateway process. Every key of the config file can also be set by a
/// `RAMPART_*` variable (`RAMPART_JOBS__LEASE=30s`) or by `--set` (`--set jobs.lease=30s`); flags
/// win over variables, which win over the file, which wins over the defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GatewayArgs {
    /// TOML config file; every key is optional.
    #[arg(long, env = "RAMPART_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Public REST address [default: 127.0.0.1:8080]; port 0 picks a free port. Same as
    /// `--set listen=ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Admin address for /health and /admin/backends [default: 127.0.0.1:9901].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,

    /// Worker endpoints, comma-separated [default: http://127.0.0.1:50051].
    #[arg(long, value_name = "URL,URL...", value_delimiter = ',')]
    pub workers: Option<Vec<String>>,

    /// Job store: sqlite://PATH or postgres://USER:PASS@HOST/DB [default: sqlite://data/rampart.db].
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,

    /// Sets any key of the config file, by its dotted path: `--set jobs.lease=30s`,
    /// `--set rate_limit.rate=50`. The value is read as TOML where the key is not text. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = layers::parse_set)]
    pub set: Vec<Override>,

    /// Stop when standard input closes (used by `rampart up` so the gateway never outlives it).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

impl GatewayArgs {
    /// The configuration these options give, with the process's environment.
    pub fn config(&self) -> Result<GatewayConfig, ConfigError> {
        self.config_with(std::env::vars())
    }

    /// The configuration these options give with `variables` as the environment: defaults,
    /// then the file, then the variables, then the flags.
    pub fn config_with(
        &self,
        variables: impl IntoIterator<Item = (String, String)>,
    ) -> Result<GatewayConfig, ConfigError> {
        let mut overrides = layers::from_environment(variables);
        let flag = |key: &str, value: String| Override { source: Source::Flag, key: key.to_owned(), value };
        overrides.extend(self.listen.clone().map(|value| flag("listen", value)));
        overrides.extend(self.admin_listen.clone().map(|value| flag("admin_listen", value)));
        overrides.extend(self.workers.as_ref().map(|workers| flag("workers", workers.join(","))));
        overrides.extend(self.store.clone().map(|value| flag("store", value)));
        overrides.extend(self.set.iter().cloned());
        layers::load(self.config.as_deref(), &overrides)
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
        let config = args.config_with([]).unwrap();
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
        let config = args.config_with([]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:7100");
        assert_eq!(config.admin_listen, "127.0.0.1:7001");
        assert_eq!(config.workers, GatewayConfig::default().workers);
    }

    #[test]
    fn bad_flag_values_are_refused() {
        let args = GatewayArgs { workers: Some(vec!["localhost".into()]), ..Default::default() };
        let error = args.config_with([]).unwrap_err().to_string();
        assert!(error.contains("flags") && error.contains("workers[0]"), "{error}");
    }
}
