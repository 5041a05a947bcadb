//! `--format`: Docker's Go templates (`{{.Name}}`, `{{json .IPAM}}`,
//! `{{range .IPAM.Config}}{{.Subnet}}{{end}}`) over the same JSON the API answers, with the
//! gtmpl crate and the functions the docker CLI adds (json, join, split, lower, upper, title,
//! truncate).
//!
//! Go prints a struct's fields in declaration order and a map's keys sorted; JSON objects carry
//! no such distinction, so objects whose keys all start with a capital letter are taken as
//! structs (Docker's models) and the others as maps (labels, options, endpoints). A struct keeps
//! its JSON text, in its original key order, under a hidden key for `json` to print.

use std::collections::HashMap;
use std::fmt;

use gtmpl::{Context, FuncError, Template, Value};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Where a struct keeps its own JSON text (no real key starts with a NUL).
const JSON_KEY: &str = "\u{0}json";

/// A JSON value that keeps its objects' key order.
enum Ordered {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Ordered, E> {
                Ok(Ordered::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Ordered, E> {
                Ok(Ordered::Null)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Ordered, E> {
                Ok(Ordered::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Ordered, E> {
                Ok(Ordered::Number(n.into()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Ordered, E> {
                Ok(Ordered::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Ordered, E> {
                Ok(serde_json::Number::from_f64(n).map_or(Ordered::Null, Ordered::Number))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Ordered, E> {
                Ok(Ordered::String(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Ordered, E> {
                Ok(Ordered::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(Ordered::Array(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Ordered>()? {
                    out.push((k, v));
                }
                Ok(Ordered::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Ordered {
    /// Compact JSON, keys in their order.
    fn json(&self, out: &mut String) {
        match self {
            Ordered::Null => out.push_str("null"),
            Ordered::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Ordered::Number(n) => out.push_str(&n.to_string()),
            Ordered::String(s) => out.push_str(&serde_json::Value::from(s.as_str()).to_string()),
            Ordered::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.json(out);
                }
                out.push(']');
            }
            Ordered::Object(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::from(k.as_str()).to_string());
                    out.push(':');
                    v.json(out);
                }
                out.push('}');
            }
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Ordered::Null => Value::Nil,
            Ordered::Bool(b) => Value::Bool(*b),
            Ordered::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Value::from(u)
                } else if let Some(i) = n.as_i64() {
                    Value::from(i)
                } else {
                    Value::from(n.as_f64().unwrap_or(0.0))
                }
            }
            Ordered::String(s) => Value::String(s.clone()),
            Ordered::Array(a) => Value::Array(a.iter().map(Ordered::to_value).collect()),
            Ordered::Object(o) => {
                let mut map: HashMap<String, Value> =
                    o.iter().map(|(k, v)| (k.clone(), v.to_value())).collect();
                let is_struct = !o.is_empty()
                    && o.iter()
                        .all(|(k, _)| k.starts_with(|c: char| c.is_ascii_uppercase()));
                if is_struct {
                    let mut text = String::new();
                    self.json(&mut text);
                    map.insert(JSON_KEY.into(), Value::String(text));
                    Value::Object(map)
                } else {
                    Value::Map(map)
                }
            }
        }
    }
}

/// Go's JSON of a template value: a struct as it came, a map with sorted keys.
fn json_of(v: &Value) -> String {
    match v {
        Value::Object(o) => match o.get(JSON_KEY) {
            Some(Value::String(text)) => text.clone(),
            _ => json_of(&Value::Map(o.clone())),
        },
        Value::Map(m) => {
            let mut keys: Vec<&String> = m.keys().filter(|k| *k != JSON_KEY).collect();
            keys.sort();
            let body: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", serde_json::Value::from(k.as_str()), json_of(&m[k])))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(json_of).collect::<Vec<_>>().join(",")),
        Value::String(s) => serde_json::Value::from(s.as_str()).to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Nil | Value::NoValue | Value::Function(_) => "null".into(),
    }
}

fn one_arg<'a>(name: &str, args: &'a [Value]) -> Result<&'a Value, FuncError> {
    match args {
        [v] => Ok(v),
        _ => Err(FuncError::ExactlyXArgs(name.into(), 1)),
    }
}

fn string_arg(v: &Value) -> Result<String, FuncError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Ok(other.to_string()),
    }
}

fn f_json(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(json_of(one_arg("json", args)?)))
}

fn f_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string_arg(one_arg("lower", args)?)?.to_lowercase(),
    ))
}

fn f_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string_arg(one_arg("upper", args)?)?.to_uppercase(),
    ))
}

fn f_title(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(super::output::title(&string_arg(one_arg(
        "title", args,
    )?)?)))
}

fn f_join(args: &[Value]) -> Result<Value, FuncError> {
    let [Value::Array(items), sep] = args else {
        return Err(FuncError::Generic(
            "join takes a list and a separator".into(),
        ));
    };
    let items: Vec<String> = items.iter().map(string_arg).collect::<Result<_, _>>()?;
    Ok(Value::String(items.join(&string_arg(sep)?)))
}

fn f_split(args: &[Value]) -> Result<Value, FuncError> {
    let [s, sep] = args else {
        return Err(FuncError::ExactlyXArgs("split".into(), 2));
    };
    let (s, sep) = (string_arg(s)?, string_arg(sep)?);
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.into()))
            .collect(),
    ))
}

fn f_truncate(args: &[Value]) -> Result<Value, FuncError> {
    let [s, Value::Number(n)] = args else {
        return Err(FuncError::Generic(
            "truncate takes a string and a length".into(),
        ));
    };
    let n = n.as_u64().unwrap_or(0) as usize;
    Ok(Value::String(string_arg(s)?.chars().take(n).collect()))
}

/// A parsed `--format` template.
pub struct Format(Template);

impl Format {
    /// Parses `text`; a syntax error names the template, as the docker CLI does.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut t = Template::default();
        t.add_funcs(&[
            ("json", f_json as gtmpl::Func),
            ("lower", f_lower),
            ("upper", f_upper),
            ("title", f_title),
            ("join", f_join),
            ("split", f_split),
            ("truncate", f_truncate),
        ]);
        t.parse(text)
            .map_err(|e| anyhow::anyhow!("template parsing error: {e}"))?;
        Ok(Format(t))
    }

    /// Renders the template over `value`'s JSON.
    pub fn render<T: Serialize>(&self, value: &T) -> anyhow::Result<String> {
        let text = serde_json::to_string(value)?;
        let ordered: Ordered = serde_json::from_str(&text)?;
        self.0
            .render(&Context::from(ordered.to_value()))
            .map_err(|e| anyhow::anyhow!("template: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> serde_json::Value {
        // serde_json's own maps sort their keys; the models keep theirs: use text.
        serde_json::from_str(
            r#"{"Name":"my-net2","Id":"zo5m71j8147odbea02bj3xo6g","IPAM":{"Driver":"default","Options":null,"Config":[{"Subnet":"10.0.9.0/24","Gateway":"10.0.9.99"}]},"Options":{"encrypted":"","com.docker.network.driver.overlay.vxlanid_list":"4098"},"Labels":{}}"#,
        )
        .unwrap()
    }

    /// A model with its fields out of alphabetical order, as Docker's are.
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Ipam {
        driver: &'static str,
        options: Option<()>,
        config: Vec<Cfg>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Cfg {
        subnet: &'static str,
        gateway: &'static str,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Net {
        name: &'static str,
        #[serde(rename = "IPAM")]
        ipam: Ipam,
        labels: std::collections::BTreeMap<&'static str, &'static str>,
    }

    fn net() -> Net {
        Net {
            name: "my-net2",
            ipam: Ipam {
                driver: "default",
                options: None,
                config: vec![Cfg {
                    subnet: "10.0.9.0/24",
                    gateway: "10.0.9.99",
                }],
            },
            labels: [("tier", "web"), ("app", "x")].into_iter().collect(),
        }
    }

    fn render(t: &str) -> String {
        Format::parse(t).unwrap().render(&net()).unwrap()
    }

    #[test]
    fn the_forms_people_script_with() {
        assert_eq!(render("{{.Name}}"), "my-net2");
        assert_eq!(
            render("{{json .IPAM}}"),
            r#"{"Driver":"default","Options":null,"Config":[{"Subnet":"10.0.9.0/24","Gateway":"10.0.9.99"}]}"#
        );
        assert_eq!(
            render("{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}"),
            "10.0.9.0/24 10.0.9.99"
        );
        assert_eq!(render(r#"{{index .Labels "tier"}}"#), "web");
        assert_eq!(render("{{json .Labels}}"), r#"{"app":"x","tier":"web"}"#);
        assert_eq!(render("{{upper .Name}} {{len .IPAM.Config}}"), "MY-NET2 1");
        assert_eq!(render(r#"{{join (split .Name "-") ","}}"#), "my,net2");
        // A whole object prints as the API's JSON.
        assert!(render("{{json .}}").starts_with(r#"{"Name":"my-net2","IPAM":{"Driver""#));
        let v = Format::parse("{{.Name}}")
            .unwrap()
            .render(&network())
            .unwrap();
        assert_eq!(v, "my-net2");
    }

    #[test]
    fn errors_are_errors() {
        assert!(Format::parse("{{.Name").is_err());
        assert!(
            Format::parse("{{nope .Name}}").is_err()
                || Format::parse("{{nope .Name}}")
                    .unwrap()
                    .render(&net())
                    .is_err()
        );
        // A struct field that does not exist is an error, as in Go; a map key is <no value>.
        assert!(Format::parse("{{.Nope}}").unwrap().render(&net()).is_err());
        assert_eq!(render("{{.Labels.nope}}"), "<no value>");
    }
}
