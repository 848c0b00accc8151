//! The service catalog (`docs/semantics.md#services-and-risk`): which service a
//! (port, protocol) belongs to, how risky that service is when the Internet
//! can reach it, and what to tell the user about it in Chinese and English.
//!
//! The catalog is read once at startup from `config/services.toml` (a copy is
//! built into the binary, see [`Catalog::builtin`]) and never changes after.
//! [`Catalog::service_for_port`] runs for every flow the engine ingests, so it
//! is one index into a flat table rather than a map or a range search.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Index of a service in its [`Catalog`]; stable for the catalog's lifetime.
pub type ServiceId = u16;

/// The name of the service for endpoints the catalog does not know.
pub const UNKNOWN_NAME: &str = "Unknown";

/// The shipped catalog, embedded so the binary works without `config/`.
/// The shipped catalog's path, used when no config names another.
pub const DEFAULT_PATH: &str = "config/services.toml";

const BUILTIN: &str = include_str!("../../config/services.toml");

/// Slot value for a (port, protocol) no service claims. Also why a catalog
/// holds at most `ServiceId::MAX` services.
const NO_SERVICE: ServiceId = ServiceId::MAX;

/// One slot per (port, protocol): 65536 ports times 2 protocols, 256 KiB.
const TABLE_LEN: usize = (u16::MAX as usize + 1) * 2;

/// The transport protocols the catalog (and `DescribeInternetOpenPort`) know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP, IP protocol number 6.
    Tcp,
    /// UDP, IP protocol number 17.
    Udp,
}

impl Protocol {
    /// Both protocols, in their sort order.
    pub const ALL: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

    /// The lowercase name used in the API and the catalog: `"tcp"`, `"udp"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// The protocol for an IANA IP protocol number (6, 17); `None` for others.
    pub const fn from_number(number: u8) -> Option<Self> {
        match number {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// The IANA IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// Position of (port, self) in the flat port table.
    const fn slot(self, port: u16) -> usize {
        port as usize * 2 + self as usize
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = ParseProtocolError;

    /// Parses `"tcp"` or `"udp"`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("tcp") {
            Ok(Protocol::Tcp)
        } else if s.eq_ignore_ascii_case("udp") {
            Ok(Protocol::Udp)
        } else {
            Err(ParseProtocolError(s.to_owned()))
        }
    }
}

/// A string that is not `tcp` or `udp`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}, expected \"tcp\" or \"udp\"")]
pub struct ParseProtocolError(pub String);

/// The language of the risk texts in a response (the API's `Lang` parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Simplified Chinese, the API's default.
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    /// The API's spelling: `"zh"` or `"en"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }
}

impl FromStr for Lang {
    type Err = ParseLangError;

    /// Parses `"zh"` or `"en"`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("zh") {
            Ok(Lang::Zh)
        } else if s.eq_ignore_ascii_case("en") {
            Ok(Lang::En)
        } else {
            Err(ParseLangError(s.to_owned()))
        }
    }
}

/// A string that is not `zh` or `en`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown language {0:?}, expected \"zh\" or \"en\"")]
pub struct ParseLangError(pub String);

/// The three risk texts of a service in one language, as the API returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskText {
    /// The threat in a few words (`ProbRisk`).
    #[serde(default)]
    pub prob_risk: String,
    /// What an attacker does with the service exposed (`ProbRiskDesc`).
    #[serde(default)]
    pub prob_risk_desc: String,
    /// Why the risk level, and what to do about it (`RiskReason`).
    #[serde(default)]
    pub risk_reason: String,
}

/// One service of the catalog, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The name shown in `ServiceNameList`, unique in the catalog.
    pub name: String,
    /// Other labels that mean this service (nDPI / pmacct class names such
    /// as `TLS` for HTTPS), so an L7 label from a record finds its risk.
    pub aliases: Vec<String>,
    /// The ports the service listens on, as inclusive ranges.
    pub ports: Vec<RangeInclusive<u16>>,
    /// The protocols each of `ports` is claimed for.
    pub protocols: Vec<Protocol>,
    /// 0 none, 1 low, 2 medium, 3 high.
    pub risk_level: u8,
    /// 0 unknown, 10 allow, 20 check, 30 deny.
    pub suggest_level: u8,
    /// Texts in Simplified Chinese.
    pub zh: RiskText,
    /// Texts in English.
    pub en: RiskText,
}

impl Service {
    /// The texts in `lang`.
    pub fn text(&self, lang: Lang) -> &RiskText {
        match lang {
            Lang::Zh => &self.zh,
            Lang::En => &self.en,
        }
    }
}

/// Why a catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read service catalog {}: {error}", .path.display())]
    Read {
        /// The catalog file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The text is not TOML, or has keys or value types the format lacks.
    #[error("service catalog{} is not valid: {error}", at(.path))]
    Syntax {
        /// The catalog file, when loaded from one.
        path: Option<PathBuf>,
        /// The parser's message, with line and column.
        error: toml::de::Error,
    },
    /// The TOML is well formed but breaks catalog rules; lists every problem.
    #[error(
        "service catalog{} has {}:\n  {}",
        at(.path),
        count(.problems.len(), "problem"),
        .problems.join("\n  ")
    )]
    Invalid {
        /// The catalog file, when loaded from one.
        path: Option<PathBuf>,
        /// One line per problem, each naming the service and key.
        problems: Vec<String>,
    },
}

impl CatalogError {
    fn with_path(self, path: &Path) -> Self {
        let path = Some(path.to_path_buf());
        match self {
            CatalogError::Syntax { error, .. } => CatalogError::Syntax { path, error },
            CatalogError::Invalid { problems, .. } => CatalogError::Invalid { path, problems },
            read @ CatalogError::Read { .. } => read,
        }
    }
}

fn at(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The validated service catalog.
#[derive(Clone)]
pub struct Catalog {
    /// Indexed by [`ServiceId`].
    services: Vec<Service>,
    /// What endpoints of no known service get.
    unknown: Service,
    /// Service per (port, protocol) at [`Protocol::slot`]; `NO_SERVICE` if none.
    by_port: Box<[ServiceId]>,
    /// Lowercased names and aliases.
    by_name: HashMap<String, ServiceId>,
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The port table is 131072 entries; the names say enough.
        let names: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("Catalog")
            .field("services", &names)
            .finish_non_exhaustive()
    }
}

/// The service an endpoint runs, and the catalog entry its risk comes from.
#[derive(Clone, Debug)]
pub struct EndpointService<'a> {
    /// The name shown in `ServiceNameList`.
    pub name: Cow<'a, str>,
    /// The catalog entry giving risk, suggestion and texts.
    pub risk: &'a Service,
    /// Nothing named it: the name is `Unknown` (and `UnknownReason` applies).
    pub unknown: bool,
}

impl Catalog {
    /// An endpoint's service (`docs/semantics.md#services-and-risk`): the collector's L7 label
    /// when there is one (named as the catalog names it when the catalog
    /// knows the label), else the catalog's service for its port, else
    /// `Unknown`. A label the catalog does not know keeps the collector's
    /// name and takes the port's risk (or `Unknown`'s).
    pub fn endpoint_service(
        &self,
        port: u16,
        proto: Protocol,
        label: Option<&str>,
    ) -> EndpointService<'_> {
        let by_port = self.service_for_port(port, proto).map(|id| self.get(id));
        fn known(s: &Service) -> EndpointService<'_> {
            EndpointService {
                name: Cow::Borrowed(s.name.as_str()),
                risk: s,
                unknown: false,
            }
        }
        if let Some(label) = label {
            if let Some(id) = self.service_by_name(label) {
                return known(self.get(id));
            }
            return EndpointService {
                name: Cow::Owned(label.to_owned()),
                risk: by_port.unwrap_or_else(|| self.unknown()),
                unknown: false,
            };
        }
        match by_port {
            Some(s) => known(s),
            None => EndpointService {
                name: Cow::Borrowed(self.unknown().name.as_str()),
                risk: self.unknown(),
                unknown: true,
            },
        }
    }
}

impl Catalog {
    /// Parses and validates a catalog; on failure lists every problem found.
    pub fn from_toml_str(s: &str) -> Result<Catalog, CatalogError> {
        let raw: file::RawCatalog =
            toml::from_str(s).map_err(|error| CatalogError::Syntax { path: None, error })?;
        file::build(raw).map_err(|problems| CatalogError::Invalid {
            path: None,
            problems,
        })
    }

    /// The catalog a config's `services.catalog` names: the default path
    /// ([`DEFAULT_PATH`]) falls back to the copy built into the binary when
    /// it does not exist (running from another directory); any other path
    /// must exist.
    pub fn for_config(path: &Path) -> Result<Catalog, CatalogError> {
        if path == Path::new(DEFAULT_PATH) && !path.exists() {
            return Ok(Catalog::builtin());
        }
        Catalog::load(path)
    }

    /// Reads, parses and validates the catalog at `path`.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|error| CatalogError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Catalog::from_toml_str(&text).map_err(|e| e.with_path(path))
    }

    /// The catalog shipped in `config/services.toml`, built into the binary.
    ///
    /// Parsed once per process; later calls clone the result.
    pub fn builtin() -> Catalog {
        static PARSED: OnceLock<Catalog> = OnceLock::new();
        PARSED
            .get_or_init(|| {
                Catalog::from_toml_str(BUILTIN)
                    .unwrap_or_else(|e| panic!("built-in service catalog is invalid: {e}"))
            })
            .clone()
    }

    /// The service listening on `port`/`proto`, if the catalog knows one.
    #[inline]
    pub fn service_for_port(&self, port: u16, proto: Protocol) -> Option<ServiceId> {
        let id = self.by_port[proto.slot(port)];
        (id != NO_SERVICE).then_some(id)
    }

    /// Whether some service claims `port`/`proto`.
    #[inline]
    pub fn is_known(&self, port: u16, proto: Protocol) -> bool {
        self.by_port[proto.slot(port)] != NO_SERVICE
    }

    /// The service with this name or alias, ignoring case. `Unknown` is not a
    /// catalog service: use [`Catalog::unknown`] for it.
    pub fn service_by_name(&self, name: &str) -> Option<ServiceId> {
        // Labels are mostly lower case already: look up without allocating.
        if !name.bytes().any(|b| b.is_ascii_uppercase()) && name.is_ascii() {
            return self.by_name.get(name).copied();
        }
        self.by_name.get(&name.to_lowercase()).copied()
    }

    /// The service with this id.
    ///
    /// # Panics
    ///
    /// If `id` did not come from this catalog.
    pub fn get(&self, id: ServiceId) -> &Service {
        &self.services[usize::from(id)]
    }

    /// The `Unknown` service: its levels and texts for endpoints of no
    /// catalog service.
    pub fn unknown(&self) -> &Service {
        &self.unknown
    }

    /// All services, in catalog order (index = [`ServiceId`]).
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The number of services, not counting `Unknown`.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether the catalog has no services (only `Unknown`).
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

// ---------------------------------------------------------------------------
// The file format. Fields are optional or loosely typed here so validation can
// report every problem with its service and key, not only serde's first one.

mod file;
#[cfg(test)]
mod tests;
