//! MCP classification (JSON-RPC 2.0 over HTTP) and `tools/list` filtering.
//!
//! This module owns turning an MCP request body (one JSON-RPC message or a batch) into
//! [`Operation`]s — `tools/call` is an operation named after the tool, with
//! `params.arguments` passed to policy; protocol methods (`initialize`, `tools/list`,
//! `resources/read`, notifications …) are reads — and rewriting a `tools/list` answer so
//! the agent only sees tools its task may call.
//!
//! Tools not declared in the configuration are `destroy` (an MCP tool can do anything;
//! declare it to give it a lower class). Unknown methods are `destroy` too. A body that is
//! not JSON-RPC is [`Unparsable`]. This module must never let a batch be less dangerous
//! than its most dangerous message, and never pass an answer it cannot filter.

use std::collections::HashMap;
use std::sync::Arc;

use airlock_types::{Capability, Tier};
use serde_json::Value;

use crate::operation::{Operation, Unparsable, parse_json_strict};

/// Most messages in one batch.
pub const MAX_BATCH: usize = 256;

/// What a declared tool does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRule {
    /// `read`, `write` or `destroy`.
    pub capability: Capability,
    /// The tier of the resource it touches.
    pub tier: Tier,
    /// JSON pointer into the tool's arguments where the resource id sits (`/volumeId`).
    pub resource: Option<String>,
}

/// Classifies MCP requests for one upstream.
#[derive(Debug, Clone, Default)]
pub struct McpClassifier {
    tools: HashMap<String, Arc<ToolRule>>,
}

/// Methods that only read or negotiate.
const READ_METHODS: &[&str] =
    &["initialize", "ping", "tools/list", "resources/list", "resources/templates/list", "resources/read", "prompts/list", "prompts/get", "completion/complete"];
/// Methods that change session state on the server but touch no resource.
const WRITE_METHODS: &[&str] = &["resources/subscribe", "resources/unsubscribe", "logging/setLevel"];

impl McpClassifier {
    /// An empty classifier: every tool is `destroy` until declared.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declare `tool`. Declaring a tool twice, or a pointer not starting with `/`, is an error.
    pub fn declare(&mut self, tool: &str, rule: ToolRule) -> Result<(), String> {
        if tool.is_empty() || tool.len() > 128 || tool.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!("{tool:?} is not an MCP tool name"));
        }
        if let Some(p) = &rule.resource
            && !p.starts_with('/')
        {
            return Err(format!("resource pointer {p:?} must be a JSON pointer such as \"/volumeId\""));
        }
        if self.tools.insert(tool.to_owned(), Arc::new(rule)).is_some() {
            return Err(format!("tool {tool:?} is declared twice"));
        }
        Ok(())
    }

    /// The class and tier a call of `tool` has before its arguments are known.
    pub fn tool_class(&self, tool: &str) -> (Capability, Tier) {
        match self.tools.get(tool) {
            Some(r) => (r.capability.clone(), r.tier),
            None => (Capability::Destroy, Tier::Primary),
        }
    }

    /// Classify one request body.
    pub fn classify(&self, body: &[u8]) -> Result<Vec<Operation>, Unparsable> {
        let mut out: Vec<Operation> = Vec::new();
        match parse_json_strict(body)? {
            Value::Array(batch) => {
                if batch.is_empty() || batch.len() > MAX_BATCH {
                    return Err(Unparsable(format!("a JSON-RPC batch must hold 1 to {MAX_BATCH} messages")));
                }
                for m in &batch {
                    let op = self.message(m)?;
                    if !out.contains(&op) {
                        out.push(op);
                    }
                }
            }
            single => out.push(self.message(&single)?),
        }
        Ok(out)
    }

    fn message(&self, m: &Value) -> Result<Operation, Unparsable> {
        let Value::Object(obj) = m else {
            return Err(Unparsable("a JSON-RPC message must be an object".into()));
        };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(Unparsable("not a JSON-RPC 2.0 message (\"jsonrpc\": \"2.0\" is missing)".into()));
        }
        let op = |name: &str, capability: Capability| Operation {
            name: name.to_owned(),
            capability,
            tier: Tier::Primary,
            resource_id: None,
            declared: false,
            arguments: None,
        };
        let Some(method) = obj.get("method") else {
            // A response to a server-initiated request (sampling, elicitation, roots).
            if obj.contains_key("result") || obj.contains_key("error") {
                return Ok(op("jsonrpc/response", Capability::Write));
            }
            return Err(Unparsable("a JSON-RPC message needs a \"method\"".into()));
        };
        let method = method.as_str().ok_or_else(|| Unparsable("\"method\" must be a string".into()))?;
        if method == "tools/call" {
            let params = obj.get("params").and_then(Value::as_object).ok_or_else(|| Unparsable("tools/call needs \"params\"".into()))?;
            let tool =
                params.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).ok_or_else(|| Unparsable("tools/call needs \"params.name\"".into()))?;
            let arguments = match params.get("arguments") {
                None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
                Some(a @ Value::Object(_)) => a.clone(),
                Some(_) => return Err(Unparsable("tools/call \"params.arguments\" must be an object".into())),
            };
            let name: String = tool.chars().take(128).collect();
            return Ok(match self.tools.get(tool) {
                Some(rule) => {
                    let resource_id = rule.resource.as_deref().and_then(|p| arguments.pointer(p)).and_then(crate::operation::resource_id);
                    Operation { name, capability: rule.capability.clone(), tier: rule.tier, resource_id, declared: true, arguments: Some(arguments) }
                }
                None => {
                    Operation { name, capability: Capability::Destroy, tier: Tier::Primary, resource_id: None, declared: false, arguments: Some(arguments) }
                }
            });
        }
        if READ_METHODS.contains(&method) || method.starts_with("notifications/") {
            return Ok(op(method, Capability::Read));
        }
        if WRITE_METHODS.contains(&method) {
            return Ok(op(method, Capability::Write));
        }
        let name: String = method.chars().take(128).collect();
        Ok(op(&name, Capability::Destroy))
    }
}

/// Whether a classified request asks for the tool list (its answer must be filtered).
pub fn lists_tools(ops: &[Operation]) -> bool {
    ops.iter().any(|o| o.name == "tools/list" && !o.declared)
}

/// Why a `tools/list` answer could not be filtered (it is then withheld).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfilterable(pub String);

/// Filter a `tools/list` answer: keep only tools for which `may_call(name)` holds. Handles
/// a JSON answer (one message or a batch) and a `text/event-stream` answer (each event's
/// `data` is a JSON-RPC message). Messages without `result.tools` pass unchanged.
///
/// An event stream is parsed as the HTML standard's event-stream parser does (a leading
/// BOM; CRLF, LF or a bare CR as line ends; comments; `field:value` with one optional space;
/// a field name without a colon; an unterminated last event, which clients discard) and
/// written out again from what was parsed: the agent's client can only see what airlock
/// parsed and filtered, never a line airlock read differently.
pub fn filter_tools_list(body: &[u8], event_stream: bool, may_call: &dyn Fn(&str) -> bool) -> Result<Vec<u8>, Unfilterable> {
    if !event_stream {
        let mut v = parse_json_strict(body).map_err(|e| Unfilterable(e.0))?;
        filter_value(&mut v, may_call);
        return Ok(v.to_string().into_bytes());
    }
    let text = std::str::from_utf8(body).map_err(|_| Unfilterable("the event stream is not UTF-8".into()))?;
    let mut out = String::with_capacity(text.len());
    for ev in parse_event_stream(text) {
        for (name, value) in [("event", &ev.event), ("id", &ev.id), ("retry", &ev.retry)] {
            if let Some(v) = value {
                out.push_str(name);
                out.push_str(": ");
                out.push_str(v);
                out.push('\n');
            }
        }
        if let Some(data) = &ev.data {
            let mut v = parse_json_strict(data.as_bytes()).map_err(|e| Unfilterable(e.0))?;
            filter_value(&mut v, may_call);
            out.push_str("data: ");
            out.push_str(&v.to_string());
            out.push('\n');
        }
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// One event as a client would dispatch it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SseEvent {
    event: Option<String>,
    id: Option<String>,
    retry: Option<String>,
    /// The data buffer (lines joined with LF, the trailing LF removed); `None` when empty.
    data: Option<String>,
}

/// The events of an event stream, per the HTML standard's parsing rules. Fields other than
/// `event`, `data`, `id` and `retry` are ignored, as clients ignore them; a `retry` that is
/// not all digits is ignored too; an `id` containing NUL is ignored.
fn parse_event_stream(text: &str) -> Vec<SseEvent> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut events = Vec::new();
    let mut cur = SseEvent::default();
    let mut data = String::new();
    let mut has_data = false;
    let mut rest = text;
    // Line by line (CRLF, LF or CR ends one); an unterminated last line, and its event, is
    // not dispatched.
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[end + skip..];
        if line.is_empty() {
            if has_data || cur.event.is_some() || cur.id.is_some() || cur.retry.is_some() {
                if has_data {
                    cur.data = Some(data.strip_suffix('\n').unwrap_or(&data).to_owned());
                }
                events.push(std::mem::take(&mut cur));
            }
            data.clear();
            has_data = false;
            continue;
        }
        if line.starts_with(':') {
            continue; // a comment
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                data.push_str(value);
                data.push('\n');
                has_data = true;
            }
            "event" => cur.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => cur.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => cur.retry = Some(value.to_owned()),
            _ => {}
        }
    }
    events
}

fn filter_value(v: &mut Value, may_call: &dyn Fn(&str) -> bool) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|m| filter_value(m, may_call)),
        Value::Object(m) => {
            if let Some(Value::Array(tools)) = m.get_mut("result").and_then(|r| r.get_mut("tools")) {
                tools.retain(|t| t.get("name").and_then(Value::as_str).is_some_and(may_call));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every spelling of an event stream the standard allows is parsed, and filtered, the
    /// way a client reads it: a BOM, bare CR line ends, a `data` field without a space or
    /// without a colon, comments, unknown fields.
    #[test]
    fn event_streams_are_filtered_as_clients_parse_them() {
        let list = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_it"},{"name":"delete_it"}]}}"#;
        let may = |n: &str| n == "read_it";
        for stream in [
            format!("\u{feff}data: {list}\n\n"),
            format!("event: message\rdata: {list}\r\r"),
            format!("data:{list}\r\n\r\n"),
            format!(": comment\nfoo: bar\nid: 3\ndata: {list}\n\n"),
            format!("data\ndata: {list}\n\n"),
        ] {
            let out = String::from_utf8(filter_tools_list(stream.as_bytes(), true, &may).unwrap()).unwrap();
            assert!(out.contains("read_it") && !out.contains("delete_it"), "{stream:?} -> {out:?}");
        }
        // A JSON document split over two data lines is one message: joined, then filtered.
        let split = list.replacen(",", "\ndata: ,", 1).replace(": ,", ":,");
        let stream = format!("data: {split}\n\n");
        assert!(filter_tools_list(stream.as_bytes(), true, &may).is_ok_and(|o| !String::from_utf8_lossy(&o).contains("delete_it")));
        // An unterminated last event is not dispatched by clients, nor passed on here.
        let out = filter_tools_list(format!("data: {list}").as_bytes(), true, &may).unwrap();
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        // Data that is not JSON is withheld, whatever line ending carries it.
        assert!(filter_tools_list(b"data: {oops\r\r", true, &may).is_err());
    }

    fn classifier() -> McpClassifier {
        let mut m = McpClassifier::new();
        m.declare("list_volumes", ToolRule { capability: Capability::Read, tier: Tier::Primary, resource: None }).unwrap();
        m.declare("delete_volume", ToolRule { capability: Capability::Destroy, tier: Tier::Primary, resource: Some("/volume/id".into()) }).unwrap();
        m
    }

    fn ops(v: Value) -> Vec<Operation> {
        classifier().classify(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn tool_calls_and_methods() {
        let o = ops(
            json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "delete_volume", "arguments": { "volume": { "id": "vol-prod-db" } } } }),
        );
        assert_eq!((o[0].name.as_str(), &o[0].capability, o[0].resource_id.as_deref()), ("delete_volume", &Capability::Destroy, Some("vol-prod-db")));
        assert_eq!(o[0].arguments.as_ref().unwrap()["volume"]["id"], "vol-prod-db");
        let o = ops(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "list_volumes" } }));
        assert_eq!(o[0].capability, Capability::Read);
        let o = ops(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "mystery" } }));
        assert_eq!(o[0].capability, Capability::Destroy);
        assert_eq!(ops(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))[0].capability, Capability::Read);
        assert!(lists_tools(&ops(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))));
        assert_eq!(ops(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))[0].capability, Capability::Read);
        assert_eq!(ops(json!({ "jsonrpc": "2.0", "id": 1, "method": "sudo/rm" }))[0].capability, Capability::Destroy);
    }

    #[test]
    fn batch_keeps_the_most_dangerous() {
        let o = ops(json!([
            { "jsonrpc": "2.0", "id": 1, "method": "tools/list" },
            { "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "delete_volume", "arguments": { "volume": { "id": "v" } } } }
        ]));
        assert!(o.iter().any(|o| o.capability == Capability::Destroy));
    }

    #[test]
    fn unparsable() {
        let c = classifier();
        for bad in [
            &b"nope"[..],
            br#"{"id":1,"method":"tools/list"}"#,
            br#"{"jsonrpc":"2.0","method":"tools/call"}"#,
            br#"[]"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"list_volumes","name":"delete_volume"}}"#,
        ] {
            assert!(c.classify(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn tools_list_is_filtered() {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "result": { "tools": [{ "name": "list_volumes" }, { "name": "delete_volume" }, { "x": 1 }] } });
        let out = filter_tools_list(body.to_string().as_bytes(), false, &|n| n == "list_volumes").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["tools"], json!([{ "name": "list_volumes" }]));
        let sse = format!("event: message\r\nid: 7\r\ndata: {}\r\n\r\n", body);
        let out = String::from_utf8(filter_tools_list(sse.as_bytes(), true, &|n| n == "delete_volume").unwrap()).unwrap();
        assert!(out.starts_with("event: message\nid: 7\ndata: "), "{out}");
        assert!(out.contains("delete_volume") && !out.contains("list_volumes"), "{out}");
        assert!(filter_tools_list(b"data: {oops\n\n", true, &|_| true).is_err());
    }
}
