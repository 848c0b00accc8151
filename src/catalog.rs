//! The service catalog (SPEC §5 "Services" and "Risk"): which service a
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
const BUILTIN: &str = include_str!("../config/services.toml");

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
    /// An endpoint's service (SPEC §5 Services): the collector's L7 label
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
        let raw: RawCatalog =
            toml::from_str(s).map_err(|error| CatalogError::Syntax { path: None, error })?;
        build(raw).map_err(|problems| CatalogError::Invalid {
            path: None,
            problems,
        })
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    service: Vec<RawService>,
    unknown: Option<RawUnknown>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    ports: Vec<toml::Value>,
    #[serde(default)]
    protocols: Vec<String>,
    risk_level: Option<i64>,
    suggest_level: Option<i64>,
    zh: Option<RiskText>,
    en: Option<RiskText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnknown {
    risk_level: Option<i64>,
    suggest_level: Option<i64>,
    zh: Option<RiskText>,
    en: Option<RiskText>,
}

/// Collects problems, each prefixed with where it is (`service[3] "Redis"`).
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, at: &str, what: impl fmt::Display) {
        self.0.push(format!("{at}: {what}"));
    }
}

fn build(raw: RawCatalog) -> Result<Catalog, Vec<String>> {
    let mut problems = Problems(Vec::new());
    if raw.service.len() >= usize::from(NO_SERVICE) {
        problems.push(
            "service",
            format!(
                "{} entries, at most {} are supported",
                raw.service.len(),
                NO_SERVICE - 1
            ),
        );
        return Err(problems.0);
    }
    let labels: Vec<String> = raw
        .service
        .iter()
        .enumerate()
        .map(|(i, s)| match &s.name {
            Some(name) => format!("service[{i}] {name:?}"),
            None => format!("service[{i}]"),
        })
        .collect();
    let services: Vec<Service> = raw
        .service
        .into_iter()
        .zip(&labels)
        .map(|(s, at)| service(s, at, &mut problems))
        .collect();
    let unknown = raw.unknown.map(|u| unknown_service(u, &mut problems));
    if unknown.is_none() {
        problems.push("unknown", "the [unknown] table is missing");
    }
    let by_name = name_index(&services, &labels, &mut problems);
    let by_port = port_table(&services, &labels, &mut problems);
    match unknown {
        Some(unknown) if problems.0.is_empty() => Ok(Catalog {
            services,
            unknown,
            by_port,
            by_name,
        }),
        _ => Err(problems.0),
    }
}

fn service(raw: RawService, at: &str, problems: &mut Problems) -> Service {
    let name = raw.name.unwrap_or_default();
    if name.trim().is_empty() {
        problems.push(at, "name is missing or empty");
    } else if name.trim() != name {
        problems.push(at, "name has leading or trailing spaces");
    }
    if raw.ports.is_empty() {
        problems.push(at, "ports is missing or empty");
    }
    let ports = raw
        .ports
        .iter()
        .filter_map(|v| port_range(v).map_err(|e| problems.push(at, e)).ok())
        .collect();
    if raw.protocols.is_empty() {
        problems.push(at, "protocols is missing or empty");
    }
    let mut protocols = Vec::new();
    for p in &raw.protocols {
        match p.parse::<Protocol>() {
            Ok(proto) if protocols.contains(&proto) => {
                problems.push(at, format!("protocol {p:?} is listed twice"))
            }
            Ok(proto) => protocols.push(proto),
            Err(e) => problems.push(at, e),
        }
    }
    Service {
        name,
        aliases: raw.aliases,
        ports,
        protocols,
        risk_level: risk_level(raw.risk_level, at, problems),
        suggest_level: suggest_level(raw.suggest_level, at, problems),
        zh: texts(raw.zh, "zh", at, problems),
        en: texts(raw.en, "en", at, problems),
    }
}

fn unknown_service(raw: RawUnknown, problems: &mut Problems) -> Service {
    let at = "unknown";
    Service {
        name: UNKNOWN_NAME.to_owned(),
        aliases: Vec::new(),
        ports: Vec::new(),
        protocols: Vec::new(),
        risk_level: risk_level(raw.risk_level, at, problems),
        suggest_level: suggest_level(raw.suggest_level, at, problems),
        zh: texts(raw.zh, "zh", at, problems),
        en: texts(raw.en, "en", at, problems),
    }
}

fn risk_level(value: Option<i64>, at: &str, problems: &mut Problems) -> u8 {
    match value {
        None => problems.push(at, "risk_level is missing"),
        Some(v @ 0..=3) => return v as u8,
        Some(v) => problems.push(at, format!("risk_level {v} is not 0..=3")),
    }
    0
}

fn suggest_level(value: Option<i64>, at: &str, problems: &mut Problems) -> u8 {
    match value {
        None => problems.push(at, "suggest_level is missing"),
        Some(v @ (0 | 10 | 20 | 30)) => return v as u8,
        Some(v) => problems.push(at, format!("suggest_level {v} is not one of 0, 10, 20, 30")),
    }
    0
}

fn texts(value: Option<RiskText>, lang: &str, at: &str, problems: &mut Problems) -> RiskText {
    let Some(text) = value else {
        problems.push(at, format!("the {lang} texts are missing"));
        return RiskText::default();
    };
    for (key, s) in [
        ("prob_risk", &text.prob_risk),
        ("prob_risk_desc", &text.prob_risk_desc),
        ("risk_reason", &text.risk_reason),
    ] {
        if s.trim().is_empty() {
            problems.push(at, format!("{lang}.{key} is missing or empty"));
        }
    }
    text
}

/// One `ports` entry: an integer or an `"a-b"` string (a plain number string
/// is accepted too).
fn port_range(value: &toml::Value) -> Result<RangeInclusive<u16>, String> {
    fn port(n: i64, entry: &toml::Value) -> Result<u16, String> {
        match u16::try_from(n) {
            Ok(p) if p != 0 => Ok(p),
            _ => Err(format!("port {n} in ports entry {entry} is not 1..=65535")),
        }
    }
    let not_a_port =
        || format!("ports entry {value} is neither a port number nor an \"a-b\" range");
    match value {
        toml::Value::Integer(n) => port(*n, value).map(|p| p..=p),
        toml::Value::String(s) => {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let a: i64 = a.trim().parse().map_err(|_| not_a_port())?;
            let b: i64 = b.trim().parse().map_err(|_| not_a_port())?;
            let (a, b) = (port(a, value)?, port(b, value)?);
            if a > b {
                return Err(format!(
                    "ports entry {value} is a range whose start is after its end"
                ));
            }
            Ok(a..=b)
        }
        _ => Err(not_a_port()),
    }
}

fn name_index(
    services: &[Service],
    labels: &[String],
    problems: &mut Problems,
) -> HashMap<String, ServiceId> {
    let mut by_name: HashMap<String, ServiceId> = HashMap::new();
    for (id, service) in services.iter().enumerate() {
        let at = &labels[id];
        let id = id as ServiceId; // build() checked the count fits
        for alias in &service.aliases {
            if alias.trim().is_empty() {
                problems.push(at, "aliases has an empty entry");
            }
        }
        let names = std::iter::once(&service.name)
            .chain(&service.aliases)
            .filter(|n| !n.trim().is_empty());
        for name in names {
            let key = name.to_lowercase();
            if key == UNKNOWN_NAME.to_lowercase() {
                problems.push(at, format!("{name:?} is reserved for the [unknown] table"));
                continue;
            }
            // An alias may repeat its own service's name in another case
            // (`name = "SSH"`, `aliases = ["ssh"]`): harmless, so allowed.
            match by_name.get(&key) {
                Some(&other) if other == id => {}
                Some(&other) => problems.push(
                    at,
                    format!(
                        "name or alias {name:?} is already used by {}",
                        labels[usize::from(other)]
                    ),
                ),
                None => {
                    by_name.insert(key, id);
                }
            }
        }
    }
    by_name
}

fn port_table(
    services: &[Service],
    labels: &[String],
    problems: &mut Problems,
) -> Box<[ServiceId]> {
    let mut table = vec![NO_SERVICE; TABLE_LEN].into_boxed_slice();
    for (id, service) in services.iter().enumerate() {
        let id = id as ServiceId; // build() checked the count fits
                                  // Clashing ports grouped by (owner, protocol), so a range that
                                  // overlaps another reads as one line, not one per port.
        let mut clashes: BTreeMap<(ServiceId, Protocol), Vec<u16>> = BTreeMap::new();
        for range in &service.ports {
            for &proto in &service.protocols {
                for port in range.clone() {
                    let slot = &mut table[proto.slot(port)];
                    if *slot == NO_SERVICE {
                        *slot = id;
                    } else {
                        clashes.entry((*slot, proto)).or_default().push(port);
                    }
                }
            }
        }
        let at = &labels[usize::from(id)];
        for ((owner, proto), ports) in clashes {
            let ports = compress(&ports);
            if owner == id {
                problems.push(at, format!("{ports}/{proto} is listed twice"));
            } else {
                problems.push(
                    at,
                    format!(
                        "{ports}/{proto} already belongs to {}",
                        labels[usize::from(owner)]
                    ),
                );
            }
        }
    }
    table
}

/// `[22, 6000, 6001, 6002]` as `"22,6000-6002"`.
fn compress(ports: &[u16]) -> String {
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A valid one-service catalog entry with the given name, ports and risk.
    fn entry(name: &str, ports: &str, protocols: &str, risk_level: i64) -> String {
        format!(
            r#"
[[service]]
name = "{name}"
aliases = ["{name}-alias"]
ports = {ports}
protocols = {protocols}
risk_level = {risk_level}
suggest_level = 20
[service.en]
prob_risk = "threat"
prob_risk_desc = "what an attacker does"
risk_reason = "why"
[service.zh]
prob_risk = "威胁"
prob_risk_desc = "攻击者的做法"
risk_reason = "原因"
"#
        )
    }

    const UNKNOWN: &str = r#"
[unknown]
risk_level = 1
suggest_level = 20
[unknown.en]
prob_risk = "unknown"
prob_risk_desc = "unknown service"
risk_reason = "identify it"
[unknown.zh]
prob_risk = "未知"
prob_risk_desc = "未知服务"
risk_reason = "请确认"
"#;

    fn problems(toml: &str) -> Vec<String> {
        match Catalog::from_toml_str(toml) {
            Err(CatalogError::Invalid { problems, .. }) => problems,
            other => panic!("expected validation problems, got {other:?}"),
        }
    }

    fn name_of(cat: &Catalog, port: u16, proto: Protocol) -> Option<&str> {
        cat.service_for_port(port, proto)
            .map(|id| cat.get(id).name.as_str())
    }

    fn has_cjk(s: &str) -> bool {
        s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
    }

    #[test]
    fn builtin_catalog_parses_with_at_least_40_services() {
        let cat = Catalog::builtin();
        assert!(cat.len() >= 40, "only {} services", cat.len());
        assert!(!cat.is_empty());
    }

    #[test]
    fn every_builtin_service_has_zh_and_en_texts() {
        let cat = Catalog::builtin();
        for service in cat.services().iter().chain([cat.unknown()]) {
            for lang in [Lang::Zh, Lang::En] {
                let t = service.text(lang);
                for s in [&t.prob_risk, &t.prob_risk_desc, &t.risk_reason] {
                    assert!(
                        !s.trim().is_empty(),
                        "{} {lang:?} has an empty text",
                        service.name
                    );
                    assert_eq!(
                        has_cjk(s),
                        lang == Lang::Zh,
                        "{} {lang:?} text in the wrong language: {s}",
                        service.name
                    );
                }
            }
        }
    }

    #[test]
    fn builtin_unknown_is_low_risk_and_check() {
        let unknown = Catalog::builtin().unknown().clone();
        assert_eq!(unknown.name, UNKNOWN_NAME);
        assert_eq!((unknown.risk_level, unknown.suggest_level), (1, 20));
    }

    #[test]
    fn builtin_levels_follow_the_exposure_policy() {
        let cat = Catalog::builtin();
        let levels = |name: &str| {
            let s = cat.get(
                cat.service_by_name(name)
                    .unwrap_or_else(|| panic!("{name} missing")),
            );
            (s.risk_level, s.suggest_level)
        };
        for high in [
            "Telnet",
            "SMB",
            "RDP",
            "MySQL",
            "Redis",
            "Docker API",
            "etcd",
            "kubelet",
            "Memcached",
        ] {
            assert_eq!(levels(high), (3, 30), "{high}");
        }
        for medium in ["SSH", "FTP", "SNMP", "DNS", "NTP"] {
            assert_eq!(levels(medium).0, 2, "{medium}");
        }
        for web in ["HTTP", "HTTPS"] {
            let (risk, suggest) = levels(web);
            assert!(risk <= 1 && suggest == 10, "{web}: {risk}/{suggest}");
        }
    }

    #[test]
    fn well_known_ports_map_to_their_services() {
        let cat = Catalog::builtin();
        assert_eq!(name_of(&cat, 22, Protocol::Tcp), Some("SSH"));
        assert_eq!(name_of(&cat, 53, Protocol::Udp), Some("DNS"));
        assert_eq!(name_of(&cat, 53, Protocol::Tcp), Some("DNS"));
        assert_eq!(name_of(&cat, 11211, Protocol::Udp), Some("Memcached"));
        assert_eq!(name_of(&cat, 443, Protocol::Tcp), Some("HTTPS"));
        assert_eq!(name_of(&cat, 3389, Protocol::Tcp), Some("RDP"));
        assert_eq!(name_of(&cat, 2375, Protocol::Tcp), Some("Docker API"));
    }

    #[test]
    fn unclaimed_ports_and_protocols_are_unknown() {
        let cat = Catalog::builtin();
        assert_eq!(cat.service_for_port(50123, Protocol::Tcp), None);
        assert!(!cat.is_known(50123, Protocol::Tcp));
        assert!(!cat.is_known(0, Protocol::Tcp), "port 0 is never a service");
        assert!(!cat.is_known(22, Protocol::Udp), "ssh is tcp only");
        assert!(!cat.is_known(123, Protocol::Tcp), "ntp is udp only");
        assert!(cat.is_known(123, Protocol::Udp));
    }

    #[test]
    fn range_entries_cover_every_port_in_the_range() {
        let cat = Catalog::builtin();
        for port in 6000..=6063 {
            assert_eq!(name_of(&cat, port, Protocol::Tcp), Some("X11"), "{port}");
        }
        assert_eq!(name_of(&cat, 6064, Protocol::Tcp), None);
        assert_eq!(name_of(&cat, 27018, Protocol::Tcp), Some("MongoDB"));
    }

    #[test]
    fn names_and_aliases_match_ignoring_case() {
        let cat = Catalog::builtin();
        let https = cat.service_by_name("HTTPS");
        assert!(https.is_some());
        assert_eq!(cat.service_by_name("tls"), https);
        assert_eq!(cat.service_by_name("SsL"), https);
        assert_eq!(
            cat.service_by_name("sSh"),
            cat.service_for_port(22, Protocol::Tcp)
        );
        assert_eq!(
            cat.service_by_name("SMBV23"),
            cat.service_for_port(445, Protocol::Tcp)
        );
        assert_eq!(cat.service_by_name("no such service"), None);
        assert_eq!(
            cat.service_by_name("Unknown"),
            None,
            "unknown is not a catalog service"
        );
    }

    #[test]
    fn duplicate_port_across_services_names_both() {
        let toml = entry("First", "[22]", r#"["tcp"]"#, 2)
            + &entry("Second", r#"[80, "20-23"]"#, r#"["tcp", "udp"]"#, 2)
            + UNKNOWN;
        let problems = problems(&toml);
        assert_eq!(
            problems,
            vec![r#"service[1] "Second": 22/tcp already belongs to service[0] "First""#]
        );
    }

    #[test]
    fn overlapping_range_is_reported_as_one_line() {
        let toml = entry("Low", r#"["100-200"]"#, r#"["udp"]"#, 1)
            + &entry("High", r#"["150-250", 300]"#, r#"["udp"]"#, 1)
            + UNKNOWN;
        assert_eq!(
            problems(&toml),
            vec![r#"service[1] "High": 150-200/udp already belongs to service[0] "Low""#]
        );
    }

    #[test]
    fn risk_level_out_of_range_is_rejected() {
        let toml = entry("Redis", "[6379]", r#"["tcp"]"#, 5) + UNKNOWN;
        assert_eq!(
            problems(&toml),
            vec![r#"service[0] "Redis": risk_level 5 is not 0..=3"#]
        );
    }

    #[test]
    fn suggest_level_must_be_a_known_step() {
        let toml = entry("Redis", "[6379]", r#"["tcp"]"#, 3)
            .replace("suggest_level = 20", "suggest_level = 15")
            + UNKNOWN;
        assert_eq!(
            problems(&toml),
            vec![r#"service[0] "Redis": suggest_level 15 is not one of 0, 10, 20, 30"#]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let toml = entry("A", "[0]", r#"["tcp"]"#, 9)
            + &entry("B", r#"["30-20", 70000, "x", true]"#, r#"["sctp"]"#, 1)
            + &entry("a", "[1]", r#"["udp"]"#, 1).replace("[service.zh]", "[service.zz]");
        let err = Catalog::from_toml_str(&toml);
        // `zz` is an unknown key, which serde reports alone; fix it to see the rest.
        assert!(matches!(err, Err(CatalogError::Syntax { .. })), "{err:?}");
        let toml = toml
            .replace("[service.zz]", "[service.zh]")
            .replace(r#"prob_risk = "威胁""#, r#"prob_risk = " ""#);
        let problems = problems(&toml);
        let expected = [
            r#"service[0] "A": port 0 in ports entry 0 is not 1..=65535"#,
            r#"service[0] "A": risk_level 9 is not 0..=3"#,
            r#"service[0] "A": zh.prob_risk is missing or empty"#,
            r#"service[1] "B": ports entry "30-20" is a range whose start is after its end"#,
            r#"service[1] "B": port 70000 in ports entry 70000 is not 1..=65535"#,
            r#"service[1] "B": ports entry "x" is neither a port number nor an "a-b" range"#,
            r#"service[1] "B": ports entry true is neither a port number nor an "a-b" range"#,
            r#"service[1] "B": unknown protocol "sctp", expected "tcp" or "udp""#,
            r#"service[2] "a": name or alias "a" is already used by service[0] "A""#,
            r#"unknown: the [unknown] table is missing"#,
        ];
        for e in expected {
            assert!(
                problems.iter().any(|p| p == e),
                "missing {e:?} in {problems:#?}"
            );
        }
        let message = Catalog::from_toml_str(&toml).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!(
                "service catalog has {} problems:\n",
                problems.len()
            )),
            "{message}"
        );
    }

    #[test]
    fn missing_language_and_fields_are_reported() {
        let toml = r#"
[[service]]
ports = [1]
[service.en]
prob_risk = "x"
"#;
        let problems = problems(toml);
        for e in [
            "service[0]: name is missing or empty",
            "service[0]: protocols is missing or empty",
            "service[0]: risk_level is missing",
            "service[0]: suggest_level is missing",
            "service[0]: the zh texts are missing",
            "service[0]: en.prob_risk_desc is missing or empty",
            "service[0]: en.risk_reason is missing or empty",
        ] {
            assert!(
                problems.iter().any(|p| p == e),
                "missing {e:?} in {problems:#?}"
            );
        }
    }

    #[test]
    fn alias_clashing_with_another_name_is_rejected() {
        let toml = entry("SSH", "[22]", r#"["tcp"]"#, 2)
            + &entry("Other", "[23]", r#"["tcp"]"#, 2).replace("Other-alias", "ssh")
            + UNKNOWN;
        assert_eq!(
            problems(&toml),
            vec![r#"service[1] "Other": name or alias "ssh" is already used by service[0] "SSH""#]
        );
    }

    #[test]
    fn unknown_is_a_reserved_name() {
        let toml = entry("unknown", "[22]", r#"["tcp"]"#, 2) + UNKNOWN;
        assert_eq!(
            problems(&toml),
            vec![r#"service[0] "unknown": "unknown" is reserved for the [unknown] table"#]
        );
    }

    #[test]
    fn port_listed_twice_in_one_service_is_rejected() {
        let toml = entry("Dup", r#"[22, "20-22"]"#, r#"["tcp"]"#, 2) + UNKNOWN;
        assert_eq!(
            problems(&toml),
            vec![r#"service[0] "Dup": 22/tcp is listed twice"#]
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let toml = entry("A", "[1]", r#"["tcp"]"#, 1)
            .replace("risk_level = 1", "risk_level = 1\nrisk = 2")
            + UNKNOWN;
        let err = Catalog::from_toml_str(&toml).unwrap_err();
        assert!(matches!(err, CatalogError::Syntax { .. }));
        assert!(err.to_string().contains("unknown field `risk`"), "{err}");
    }

    #[test]
    fn load_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let err = Catalog::load(&missing).unwrap_err();
        assert!(matches!(err, CatalogError::Read { .. }));
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );

        let bad = dir.path().join("services.toml");
        std::fs::write(&bad, entry("A", "[1]", r#"["tcp"]"#, 7) + UNKNOWN).unwrap();
        let err = Catalog::load(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("service catalog {} has 1 problem:", bad.display())),
            "{err}"
        );
        assert!(err.contains("risk_level 7"), "{err}");
    }

    #[test]
    fn load_reads_a_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("services.toml");
        std::fs::write(
            &path,
            entry("Echo", r#"[7, "9-10"]"#, r#"["tcp", "UDP"]"#, 1) + UNKNOWN,
        )
        .unwrap();
        let cat = Catalog::load(&path).unwrap();
        assert_eq!(cat.len(), 1);
        assert_eq!(name_of(&cat, 10, Protocol::Udp), Some("Echo"));
        assert_eq!(cat.get(0).ports, vec![7..=7, 9..=10]);
        assert_eq!(cat.get(0).text(Lang::Zh).prob_risk, "威胁");
        assert_eq!(cat.unknown().text(Lang::En).prob_risk, "unknown");
    }

    #[test]
    fn protocol_conversions() {
        assert_eq!(Protocol::from_number(6), Some(Protocol::Tcp));
        assert_eq!(Protocol::from_number(17), Some(Protocol::Udp));
        assert_eq!(Protocol::from_number(1), None);
        assert_eq!("TCP".parse::<Protocol>(), Ok(Protocol::Tcp));
        assert_eq!("udp".parse::<Protocol>(), Ok(Protocol::Udp));
        assert!("icmp".parse::<Protocol>().is_err());
        assert_eq!(Protocol::Udp.as_str(), "udp");
        assert_eq!(Protocol::Tcp.to_string(), "tcp");
        assert!(Protocol::Tcp < Protocol::Udp, "rows sort tcp before udp");
    }

    #[test]
    fn lang_defaults_to_chinese_and_parses_any_case() {
        assert_eq!(Lang::default(), Lang::Zh);
        assert_eq!("EN".parse::<Lang>(), Ok(Lang::En));
        assert_eq!("zh".parse::<Lang>(), Ok(Lang::Zh));
        assert!("fr".parse::<Lang>().is_err());
    }

    #[test]
    fn compress_joins_consecutive_ports() {
        assert_eq!(compress(&[6002, 22, 6000, 6001, 22]), "22,6000-6002");
    }

    proptest! {
        /// The flat table agrees with a plain scan of every service's ranges.
        #[test]
        fn port_table_agrees_with_the_service_ranges(port: u16, udp: bool) {
            let cat = Catalog::builtin();
            let proto = if udp { Protocol::Udp } else { Protocol::Tcp };
            let scanned = cat
                .services()
                .iter()
                .position(|s| s.protocols.contains(&proto) && s.ports.iter().any(|r| r.contains(&port)));
            prop_assert_eq!(cat.service_for_port(port, proto).map(usize::from), scanned);
        }
    }
}
