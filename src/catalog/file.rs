//! The catalog file's format and its validation: every problem is
//! collected, with the service and key it concerns.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCatalog {
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

pub(super) fn build(raw: RawCatalog) -> Result<Catalog, Vec<String>> {
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
pub(super) fn compress(ports: &[u16]) -> String {
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
