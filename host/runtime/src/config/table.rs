//! Reading a table of a configuration file into a typed struct with serde, with
//! errors that name the key and say what to write, every problem at once.
//!
//! Each struct is `#[serde(deny_unknown_fields)]`; unknown keys are reported first,
//! all of them, in the table's own words (its field names are asked of serde, not
//! kept in a second list), then the rest is read, and serde's errors name their key.

use serde::de::{self, DeserializeOwned, Visitor};

/// The field names of a struct that serde reads (asked of its `Deserialize`).
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl std::fmt::Display for Found {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "fields {:?}", self.0)
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Found(&[])
        }
    }
    /// Answers `deserialize_struct` with its field names, as an error.
    struct Ask;
    impl<'de> de::Deserializer<'de> for Ask {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Ask) {
        Err(Found(fields)) => fields,
        Ok(_) => &[],
    }
}

/// Reads `table` into `T`: unknown keys become `unknown(key, known keys)`, serde's
/// other errors `` `key`: what it expected ``. On errors, `T::default()` stands in so
/// that the caller can go on checking values and report every problem at once.
pub fn read<T: DeserializeOwned + Default>(
    table: &toml::Table,
    unknown: impl Fn(&str, &[&str]) -> String,
) -> (T, Vec<String>) {
    let fields = fields_of::<T>();
    let mut problems = Vec::new();
    let mut known = toml::Table::new();
    for (key, value) in table {
        if fields.contains(&key.as_str()) {
            known.insert(key.clone(), value.clone());
        } else {
            problems.push(unknown(key, fields));
        }
    }
    match T::deserialize(toml::Value::Table(known)) {
        Ok(read) => (read, problems),
        Err(e) => {
            problems.push(keyed(&e.to_string()));
            (T::default(), problems)
        }
    }
}

/// serde's `what\nin `key`` as `` `key`: what ``.
fn keyed(message: &str) -> String {
    match message.trim().rsplit_once("\nin `") {
        Some((what, key)) => format!("`{}`: {what}", key.trim_end_matches('`')),
        None => message.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Example {
        #[serde(default)]
        size: Option<u64>,
        #[serde(default)]
        flag: bool,
    }

    #[test]
    fn every_unknown_key_and_the_key_of_a_bad_value_are_named() {
        assert_eq!(fields_of::<Example>(), ["size", "flag"]);
        let table: toml::Table = "size = \"big\"\ncolour = 1\nshape = 2\n".parse().unwrap();
        let (example, problems) = read::<Example>(&table, |key, known| format!("`{key}` is not one of {known:?}"));
        assert_eq!(example, Example::default());
        assert_eq!(problems[0], "`colour` is not one of [\"size\", \"flag\"]");
        assert_eq!(problems[1], "`shape` is not one of [\"size\", \"flag\"]");
        assert!(problems[2].starts_with("`size`: invalid type: string \"big\", expected u64"), "{}", problems[2]);
        let (example, problems) = read::<Example>(&"size = 3".parse().unwrap(), |_, _| unreachable!());
        assert_eq!((example, problems.len()), (Example { size: Some(3), flag: false }, 0));
    }
}
