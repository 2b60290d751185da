//! The RFC 7644 §3.4.2.2 filter language: lexer, parser (precedence `not` > `and` > `or`,
//! grouping, valuePath), PATCH paths (§3.5.2), and evaluation over JSON resources using
//! the schema's `caseExact` and types. Keywords and attribute names are case-insensitive.

use std::cmp::Ordering;

use serde_json::Value;

use crate::schema::{AttrType, Attribute, ResourceKind, Schemas};

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses, `not` and valuePaths accepted.
pub const MAX_DEPTH: usize = 32;

/// `[urn:]name[.sub]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, CompareOp, CompValue),
    /// `attr[filter]`: the inner filter's paths are sub-attributes of `attr`.
    ValuePath(AttrPath, Box<Filter>),
}

/// A PATCH target: `attrPath` or `valuePath[.subAttr]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// Sub-attribute after a valuePath: `emails[type eq "work"].value`.
    pub sub_after_filter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError(message.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Word(String),
    Str(String),
    Num(f64),
}

fn lex(input: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '[' => {
                tokens.push(Token::OpenBracket);
                i += 1;
            }
            ']' => {
                tokens.push(Token::CloseBracket);
                i += 1;
            }
            '"' => {
                // A JSON string literal, escapes included.
                let start = i;
                i += 1;
                let mut escaped = false;
                while i < chars.len() {
                    match chars[i] {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return err("unterminated string literal");
                }
                let literal: String = chars[start..=i].iter().collect();
                let value: String = serde_json::from_str(&literal)
                    .map_err(|_| FilterError(format!("invalid string literal {literal}")))?;
                tokens.push(Token::Str(value));
                i += 1;
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || matches!(chars[i], '-' | '+' | '.' | 'e' | 'E'))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n: f64 = text.parse().map_err(|_| FilterError(format!("invalid number {text}")))?;
                if !n.is_finite() {
                    return err(format!("number {text} is out of range"));
                }
                tokens.push(Token::Num(n));
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '$' | ':' | '.' | '-') => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$' | ':' | '.' | '-'))
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            other => return err(format!("unexpected character {other:?}")),
        }
    }
    Ok(tokens)
}

/// Splits `[urn:]name[.sub]`. URNs end at their last `:`.
pub fn parse_attr_path(word: &str) -> Result<AttrPath, FilterError> {
    // `get`, not `[..4]`: a name whose fourth byte falls inside a character is no URN (and
    // must not panic).
    let (urn, rest) = if word.len() > 4 && word.get(..4).is_some_and(|w| w.eq_ignore_ascii_case("urn:")) {
        match word.rfind(':') {
            Some(i) => (Some(word[..i].to_owned()), &word[i + 1..]),
            None => return err(format!("invalid attribute path {word:?}")),
        }
    } else {
        (None, word)
    };
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
    };
    if !valid(name) || sub.is_some_and(|s| !valid(s)) {
        return err(format!("invalid attribute path {word:?}"));
    }
    Ok(AttrPath { urn, name: name.to_owned(), sub: sub.map(str::to_owned) })
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { err(format!("filter nests deeper than {MAX_DEPTH} levels")) } else { Ok(()) }
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.peek_keyword("not") {
            self.pos += 1;
            if self.next() != Some(Token::Open) {
                return err("expected ( after not");
            }
            self.enter()?;
            let inner = self.or()?;
            self.depth -= 1;
            if self.next() != Some(Token::Close) {
                return err("expected ) closing not(");
            }
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Token::Open) {
            self.pos += 1;
            self.enter()?;
            let inner = self.or()?;
            self.depth -= 1;
            if self.next() != Some(Token::Close) {
                return err("expected )");
            }
            return Ok(inner);
        }
        self.attr_expression()
    }

    fn attr_expression(&mut self) -> Result<Filter, FilterError> {
        let word = match self.next() {
            Some(Token::Word(w)) => w,
            Some(other) => return err(format!("expected an attribute path, found {}", describe(&other))),
            None => return err("unexpected end of filter"),
        };
        let path = parse_attr_path(&word)?;
        if self.peek() == Some(&Token::OpenBracket) {
            self.pos += 1;
            if path.sub.is_some() {
                return err(format!("{word}[…]: a value filter applies to an attribute, not a sub-attribute"));
            }
            self.enter()?;
            let inner = self.or()?;
            self.depth -= 1;
            if self.next() != Some(Token::CloseBracket) {
                return err("expected ] closing the value filter");
            }
            // `emails[type eq "work"].value eq "a@b.com"` — the form Entra ID matches users
            // with: a comparison of a sub-attribute of the same element, so it is the value
            // filter and the comparison together.
            if let Some(Token::Word(next)) = self.peek()
                && let Some(sub) = next.strip_prefix('.')
            {
                if sub.is_empty() || sub.contains(['.', ':']) {
                    return err(format!("{word}[…]{next}: expected one sub-attribute after the value filter"));
                }
                let sub = AttrPath { urn: None, name: sub.to_owned(), sub: None };
                let shown = format!("{word}[…]{next}");
                self.pos += 1;
                let compared = self.comparison(sub, &shown)?;
                return Ok(Filter::ValuePath(path, Box::new(Filter::And(Box::new(inner), Box::new(compared)))));
            }
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        self.comparison(path, &word)
    }

    /// `op value` (or `pr`) after an attribute path.
    fn comparison(&mut self, path: AttrPath, word: &str) -> Result<Filter, FilterError> {
        let op = match self.next() {
            Some(Token::Word(op)) => op.to_ascii_lowercase(),
            Some(other) => return err(format!("expected an operator after {word}, found {}", describe(&other))),
            None => return err(format!("expected an operator after {word}")),
        };
        let op = match op.as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            other => return err(format!("unknown operator {other:?}")),
        };
        let value = match self.next() {
            Some(Token::Str(s)) => CompValue::String(s),
            Some(Token::Num(n)) => CompValue::Number(n),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => CompValue::Bool(true),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => CompValue::Bool(false),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => CompValue::Null,
            Some(other) => return err(format!("expected a value after {word} {op:?}, found {}", describe(&other))),
            None => return err(format!("expected a value after {word}")),
        };
        Ok(Filter::Compare(path, op, value))
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Open => "(".into(),
        Token::Close => ")".into(),
        Token::OpenBracket => "[".into(),
        Token::CloseBracket => "]".into(),
        Token::Word(w) => w.clone(),
        Token::Str(s) => format!("{s:?}"),
        Token::Num(n) => n.to_string(),
    }
}

/// Parses a filter expression.
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    if input.len() > MAX_FILTER_LEN {
        return err(format!("filter is longer than {MAX_FILTER_LEN} bytes"));
    }
    if input.contains('\0') {
        // No stored text holds U+0000 (PostgreSQL refuses it): refused here on every backend.
        return err("a filter must not contain the NUL character (U+0000)");
    }
    let mut parser = Parser { tokens: lex(input)?, pos: 0, depth: 0 };
    if parser.tokens.is_empty() {
        return err("empty filter");
    }
    let filter = parser.or()?;
    if let Some(extra) = parser.peek() {
        return err(format!("unexpected {} after the end of the filter", describe(extra)));
    }
    Ok(filter)
}

/// Parses a PATCH `path`.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, FilterError> {
    if input.len() > MAX_FILTER_LEN {
        return err(format!("path is longer than {MAX_FILTER_LEN} bytes"));
    }
    let Some(open) = input.find('[') else {
        return Ok(PatchPath { attr: parse_attr_path(input.trim())?, filter: None, sub_after_filter: None });
    };
    let close = input.rfind(']').ok_or_else(|| FilterError("expected ] in path".into()))?;
    if close < open {
        return err("expected ] after [ in path");
    }
    let attr = parse_attr_path(input[..open].trim())?;
    if attr.sub.is_some() {
        return err("a value filter applies to an attribute, not a sub-attribute");
    }
    let filter = parse(&input[open + 1..close])?;
    let rest = input[close + 1..].trim();
    let sub_after_filter = match rest {
        "" => None,
        r => match r.strip_prefix('.') {
            Some(sub)
                if !sub.is_empty() && sub.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$')) =>
            {
                Some(sub.to_owned())
            }
            _ => return err(format!("unexpected {r:?} after the value filter")),
        },
    };
    Ok(PatchPath { attr, filter: Some(filter), sub_after_filter })
}

/// Finds a key in a JSON object ignoring ASCII case.
pub fn get_ci<'a>(object: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// What an evaluation needs to know besides the resource.
pub struct EvalContext<'a> {
    pub schemas: &'a Schemas,
    pub kind: ResourceKind,
}

impl EvalContext<'_> {
    fn attribute(&self, path: &AttrPath) -> Option<&Attribute> {
        let top = match &path.urn {
            Some(urn) if urn.eq_ignore_ascii_case(self.kind.core_schema()) => {
                self.schemas.core_attribute(self.kind, &path.name)
            }
            Some(urn) => self.schemas.extension(self.kind, urn)?.attribute(&path.name),
            None => self.schemas.core_attribute(self.kind, &path.name),
        }?;
        match &path.sub {
            Some(sub) => top.sub(sub),
            None => top.sub("value").filter(|_| top.kind == AttrType::Complex && top.multi_valued).or(Some(top)),
        }
    }

    /// Every value the path selects in `resource` (flattened over multi-valued attributes).
    fn values<'v>(&self, path: &AttrPath, resource: &'v Value) -> Vec<&'v Value> {
        let Some(object) = resource.as_object() else { return vec![] };
        let container = match &path.urn {
            Some(urn) if !urn.eq_ignore_ascii_case(self.kind.core_schema()) => match get_ci(object, urn) {
                Some(Value::Object(ext)) => ext,
                _ => return vec![],
            },
            _ => object,
        };
        let Some(top) = get_ci(container, &path.name) else { return vec![] };
        let items: Vec<&Value> = match top {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let attribute_is_complex_multi = self
            .schemas
            .core_attribute(self.kind, &path.name)
            .or_else(|| path.urn.as_ref().and_then(|u| self.schemas.extension(self.kind, u)?.attribute(&path.name)))
            .is_some_and(|a| a.kind == AttrType::Complex && a.multi_valued);
        match &path.sub {
            Some(sub) => items.into_iter().filter_map(|i| i.as_object().and_then(|o| get_ci(o, sub))).collect(),
            // `emails co "x"` compares each email's value (RFC 7644 §3.4.2.2).
            None if attribute_is_complex_multi => {
                items.into_iter().filter_map(|i| i.as_object().and_then(|o| get_ci(o, "value"))).collect()
            }
            None => items,
        }
    }

    /// The first value a path selects, for sorting.
    pub fn sort_value<'v>(&self, path: &AttrPath, resource: &'v Value) -> Option<(&'v Value, bool)> {
        let case_exact = self.attribute(path).is_some_and(|a| a.case_exact);
        self.values(path, resource).into_iter().find(|v| present(v)).map(|v| (v, case_exact))
    }

    /// Checks operator/type combinations the RFC calls invalid (`gt` on a boolean,
    /// comparing a complex attribute).
    pub fn validate(&self, filter: &Filter) -> Result<(), FilterError> {
        match filter {
            Filter::And(a, b) | Filter::Or(a, b) => {
                self.validate(a)?;
                self.validate(b)
            }
            Filter::Not(inner) => self.validate(inner),
            Filter::Present(_) => Ok(()),
            Filter::ValuePath(path, inner) => {
                let Some(attr) = self.attribute(&AttrPath { sub: None, ..path.clone() }) else { return Ok(()) };
                let _ = attr;
                self.validate_inner(path, inner)
            }
            Filter::Compare(path, op, value) => self.validate_compare(self.attribute(path), path, *op, value),
        }
    }

    fn validate_inner(&self, parent: &AttrPath, filter: &Filter) -> Result<(), FilterError> {
        match filter {
            Filter::And(a, b) | Filter::Or(a, b) => {
                self.validate_inner(parent, a)?;
                self.validate_inner(parent, b)
            }
            Filter::Not(inner) => self.validate_inner(parent, inner),
            Filter::Present(_) => Ok(()),
            Filter::ValuePath(..) => err("value filters cannot nest"),
            Filter::Compare(path, op, value) => {
                let full =
                    AttrPath { urn: parent.urn.clone(), name: parent.name.clone(), sub: Some(path.name.clone()) };
                self.validate_compare(self.attribute(&full), path, *op, value)
            }
        }
    }

    fn validate_compare(
        &self,
        attr: Option<&Attribute>,
        path: &AttrPath,
        op: CompareOp,
        value: &CompValue,
    ) -> Result<(), FilterError> {
        let Some(attr) = attr else { return Ok(()) };
        let name = &path.name;
        match attr.kind {
            AttrType::Complex => err(format!("{name} is complex: compare one of its sub-attributes")),
            AttrType::Boolean if !matches!(op, CompareOp::Eq | CompareOp::Ne) => {
                err(format!("{name} is boolean: only eq and ne apply"))
            }
            AttrType::Boolean if !matches!(value, CompValue::Bool(_) | CompValue::Null | CompValue::String(_)) => {
                err(format!("{name} is boolean: compare with true or false"))
            }
            _ => Ok(()),
        }
    }

    /// Whether `resource` matches `filter`.
    pub fn matches(&self, filter: &Filter, resource: &Value) -> bool {
        match filter {
            Filter::And(a, b) => self.matches(a, resource) && self.matches(b, resource),
            Filter::Or(a, b) => self.matches(a, resource) || self.matches(b, resource),
            Filter::Not(inner) => !self.matches(inner, resource),
            Filter::Present(path) => self.values(path, resource).into_iter().any(present),
            Filter::Compare(path, op, value) => {
                let attr = self.attribute(path);
                let values = self.values(path, resource);
                compare_any(attr, &values, *op, value)
            }
            Filter::ValuePath(path, inner) => {
                let Some(object) = resource.as_object() else { return false };
                let container = match &path.urn {
                    Some(urn) if !urn.eq_ignore_ascii_case(self.kind.core_schema()) => match get_ci(object, urn) {
                        Some(Value::Object(ext)) => ext,
                        _ => return false,
                    },
                    _ => object,
                };
                let items: Vec<&Value> = match get_ci(container, &path.name) {
                    Some(Value::Array(items)) => items.iter().collect(),
                    Some(other) => vec![other],
                    None => return false,
                };
                items.into_iter().any(|item| self.matches_element(path, inner, item))
            }
        }
    }

    /// Evaluates a value filter against one element of a multi-valued attribute.
    pub fn matches_element(&self, parent: &AttrPath, filter: &Filter, element: &Value) -> bool {
        match filter {
            Filter::And(a, b) => self.matches_element(parent, a, element) && self.matches_element(parent, b, element),
            Filter::Or(a, b) => self.matches_element(parent, a, element) || self.matches_element(parent, b, element),
            Filter::Not(inner) => !self.matches_element(parent, inner, element),
            Filter::ValuePath(..) => false,
            Filter::Present(path) => sub_value(element, &path.name).is_some_and(present),
            Filter::Compare(path, op, value) => {
                let full =
                    AttrPath { urn: parent.urn.clone(), name: parent.name.clone(), sub: Some(path.name.clone()) };
                let attr = self.attribute(&full);
                let values: Vec<&Value> = sub_value(element, &path.name).into_iter().collect();
                compare_any(attr, &values, *op, value)
            }
        }
    }
}

fn sub_value<'v>(element: &'v Value, name: &str) -> Option<&'v Value> {
    match element {
        Value::Object(o) => get_ci(o, name),
        // A multi-valued attribute of simple values: `value` is the element itself.
        other if name.eq_ignore_ascii_case("value") => Some(other),
        _ => None,
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare_any(attr: Option<&Attribute>, values: &[&Value], op: CompareOp, expected: &CompValue) -> bool {
    if op == CompareOp::Ne {
        return !compare_any(attr, values, CompareOp::Eq, expected);
    }
    if matches!(expected, CompValue::Null) {
        return op == CompareOp::Eq && !values.iter().any(|v| present(v));
    }
    values.iter().any(|v| compare_one(attr, v, op, expected))
}

fn compare_one(attr: Option<&Attribute>, actual: &Value, op: CompareOp, expected: &CompValue) -> bool {
    let case_exact = attr.is_some_and(|a| a.case_exact);
    let kind = attr.map(|a| a.kind);
    match (actual, expected) {
        (Value::Bool(a), CompValue::Bool(e)) => op == CompareOp::Eq && a == e,
        (Value::Bool(a), CompValue::String(e)) => {
            op == CompareOp::Eq && e.eq_ignore_ascii_case(if *a { "true" } else { "false" })
        }
        (Value::Number(a), CompValue::Number(e)) => a.as_f64().is_some_and(|a| ordered(a.partial_cmp(e), op)),
        (Value::String(a), CompValue::String(e)) => {
            if kind == Some(AttrType::DateTime)
                && let (Ok(a), Ok(e)) = (a.parse::<jiff::Timestamp>(), e.parse::<jiff::Timestamp>())
            {
                return ordered(Some(a.cmp(&e)), op);
            }
            let (a, e) = if case_exact { (a.clone(), e.clone()) } else { (a.to_lowercase(), e.to_lowercase()) };
            match op {
                CompareOp::Eq => a == e,
                CompareOp::Co => a.contains(&e),
                CompareOp::Sw => a.starts_with(&e),
                CompareOp::Ew => a.ends_with(&e),
                _ => ordered(Some(a.cmp(&e)), op),
            }
        }
        (Value::String(a), CompValue::Number(e)) => a.parse::<f64>().is_ok_and(|a| ordered(a.partial_cmp(e), op)),
        _ => false,
    }
}

fn ordered(ordering: Option<Ordering>, op: CompareOp) -> bool {
    let Some(o) = ordering else { return false };
    match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        // Substring operators do not apply to numbers and instants.
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

/// `attr eq "value"` on a top-level attribute, for lookups a store can answer by index.
pub fn top_level_equality(filter: &Filter) -> Option<(&str, &str)> {
    match filter {
        Filter::Compare(AttrPath { urn: None, name, sub: None }, CompareOp::Eq, CompValue::String(value)) => {
            Some((name.as_str(), value.as_str()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user() -> Value {
        json!({
            "userName": "Bjensen@Example.com",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "active": true,
            "emails": [
                {"value": "bjensen@acme.example", "type": "work", "primary": true},
                {"value": "babs@home.example", "type": "home"}
            ],
            "meta": {"lastModified": "2026-05-13T04:42:34Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "manager": {"value": "26118915"}},
            "urn:idbridge:params:scim:schemas:extension:portal:2.0:User": {"queues": "101,102"}
        })
    }

    fn check(filter: &str) -> bool {
        let schemas = Schemas::default();
        let ctx = EvalContext { schemas: &schemas, kind: ResourceKind::User };
        let parsed = parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        ctx.validate(&parsed).unwrap_or_else(|e| panic!("{filter}: {e}"));
        ctx.matches(&parsed, &user())
    }

    #[test]
    fn rfc_examples_and_case_rules() {
        assert!(check(r#"userName eq "bjensen@example.com""#), "userName is not caseExact");
        assert!(check(r#"UserName Eq "BJENSEN@EXAMPLE.COM""#), "names and operators ignore case");
        assert!(check(r#"name.familyName co "ens""#));
        assert!(check(r#"name.FamilyName sw "J""#));
        assert!(check(r#"userName ew ".com""#));
        assert!(!check("title pr"));
        assert!(check("emails pr"));
        assert!(check(r#"meta.lastModified gt "2026-01-01T00:00:00Z""#));
        assert!(!check(r#"meta.lastModified lt "2026-01-01T00:00:00Z""#));
        assert!(check(r#"emails co "acme.example""#), "complex multi-valued compares value");
        assert!(check(r#"emails[type eq "work" and value co "@acme"]"#));
        assert!(!check(r#"emails[type eq "home" and value co "@acme"]"#));
        assert!(check(r#"emails[not (type eq "work")]"#));
        // Entra ID's user-matching form: the sub-attribute of the same element.
        assert!(check(r#"emails[type eq "work"].value eq "bjensen@acme.example""#));
        assert!(!check(r#"emails[type eq "home"].value eq "bjensen@acme.example""#));
        assert!(check(r#"emails[type eq "home"].value pr"#));
        assert!(parse(r#"emails[type eq "work"]. eq "x""#).is_err());
        assert!(parse(r#"emails[type eq "work"].value.x eq "x""#).is_err());
        assert!(check(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#));
        assert!(check(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915""#));
        assert!(check(r#"urn:idbridge:params:scim:schemas:extension:portal:2.0:User:queues co "102""#));
        assert!(check(r#"active eq true and not (userName eq "x")"#));
        assert!(check(r#"userName eq "x" or userName sw "b" and active eq true"#), "and binds tighter than or");
        assert!(!check(r#"(userName eq "x" or userName sw "b") and active eq false"#));
        assert!(check(r#"title ne "boss""#), "ne matches an absent attribute");
        assert!(check("title eq null"));
        assert!(!check(r#"nosuch eq "x""#), "unknown attributes match nothing");
    }

    #[test]
    fn malformed_filters_are_rejected_with_a_reason() {
        for bad in [
            "",
            "userName",
            r#"userName eq"#,
            r#"userName zz "x""#,
            r#"userName eq "x" and"#,
            r#"(userName eq "x""#,
            r#"userName eq "x")"#,
            r#"emails[type eq "work""#,
            r#"userName eq "unterminated"#,
            "userName eq 1e999",
            r#"not userName eq "x""#,
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        let deep = format!("{}userName pr{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).unwrap_err().0.contains("deeper"));
        let long = format!("userName eq \"{}\"", "x".repeat(5000));
        assert!(parse(&long).unwrap_err().0.contains("longer"));

        let schemas = Schemas::default();
        let ctx = EvalContext { schemas: &schemas, kind: ResourceKind::User };
        assert!(ctx.validate(&parse("active gt true").unwrap()).is_err());
        assert!(ctx.validate(&parse(r#"name eq "x""#).unwrap()).is_err());
    }

    #[test]
    fn patch_paths() {
        let p = parse_patch_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr.name, "emails");
        assert_eq!(p.sub_after_filter.as_deref(), Some("value"));
        let p = parse_patch_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager").unwrap();
        assert_eq!(p.attr.urn.as_deref(), Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"));
        let p = parse_patch_path(r#"members[value eq "2819c223"]"#).unwrap();
        assert!(p.filter.is_some());
        assert!(parse_patch_path("emails[type eq \"work\"].").is_err());
        assert!(parse_patch_path("na me").is_err());
    }
}
