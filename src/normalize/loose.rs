//! Tolerant field types: audit logs write the same field as a string, a number or a boolean
//! depending on the cloud, the record version and the delivery path.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A scalar read as text: strings as they are, numbers and booleans in their JSON spelling.
/// Objects and arrays are ignored (read as an empty string) rather than failing the record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LooseStr<'a>(pub Cow<'a, str>);

impl<'a> LooseStr<'a> {
    /// The text, or None when it is empty. Borrowed text stays borrowed.
    pub fn non_empty(&self) -> Option<Cow<'a, str>> {
        if self.0.is_empty() {
            None
        } else {
            Some(self.0.clone())
        }
    }
}

/// `Option<LooseStr>` → the text, with empty strings as None.
pub fn text<'a>(v: &Option<LooseStr<'a>>) -> Option<Cow<'a, str>> {
    v.as_ref().and_then(LooseStr::non_empty)
}

/// Any JSON value, with the text of a scalar and only the kind of a container (which is read
/// and dropped). What [`LooseStr`] and other tolerant fields are read through.
#[derive(Debug, Clone, PartialEq)]
pub enum Loose<'a> {
    Str(Cow<'a, str>),
    /// A number in its JSON spelling (as serde_json prints it).
    Number(String),
    Bool(bool),
    Null,
    Object,
    Array,
}

impl Loose<'_> {
    /// What the value is, for reasons: "a string", "a number", "an object", ...
    pub fn kind(&self) -> &'static str {
        match self {
            Loose::Str(_) => "a string",
            Loose::Number(_) => "a number",
            Loose::Bool(_) => "a boolean",
            Loose::Null => "null",
            Loose::Object => "an object",
            Loose::Array => "an array",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Loose::Number(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Loose::Number(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Loose::Number(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Loose::Bool(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Loose::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Array)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LooseStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(LooseStr(match Loose::deserialize(d)? {
            Loose::Str(s) => s,
            Loose::Number(n) => Cow::Owned(n),
            Loose::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            Loose::Null | Loose::Object | Loose::Array => Cow::Borrowed(""),
        }))
    }
}

/// A flag written as `true`, `"true"`, `"True"`, `1`, `"1"`, `"Yes"` (and the negatives).
/// Anything else reads as unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LooseBool(pub Option<bool>);

pub fn parse_flag(s: &str) -> Option<bool> {
    match s.trim() {
        t if t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("yes") || t == "1" => {
            Some(true)
        }
        t if t.eq_ignore_ascii_case("false") || t.eq_ignore_ascii_case("no") || t == "0" => {
            Some(false)
        }
        _ => None,
    }
}

impl<'de> Deserialize<'de> for LooseBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = LooseStr::deserialize(d)?;
        Ok(LooseBool(parse_flag(&s.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_spelling() {
        let v: Vec<LooseStr> =
            serde_json::from_str(r#"["a", 12, 1.5, true, null, {"x":1}, [1]]"#).expect("json");
        let got: Vec<&str> = v.iter().map(|s| s.0.as_ref()).collect();
        assert_eq!(got, vec!["a", "12", "1.5", "true", "", "", ""]);
        let b: Vec<LooseBool> =
            serde_json::from_str(r#"[true, "false", "Yes", 0, "1", "maybe"]"#).expect("json");
        let got: Vec<Option<bool>> = b.iter().map(|b| b.0).collect();
        assert_eq!(
            got,
            vec![
                Some(true),
                Some(false),
                Some(true),
                Some(false),
                Some(true),
                None
            ]
        );
    }
}
