//! Reading and writing the formats SOPS stores documents in. YAML and JSON keep their key order;
//! dotenv and INI hold their metadata flattened (`sops_age__list_0__map_enc=…`); a binary file
//! is a JSON document with the whole content in `data`.

use super::tree::Value;
use super::{Error, Format, metadata};

type Branch = Vec<(String, Value)>;

/// An INI section: its name and its keys with their values, in file order.
type Section = (String, Vec<(String, String)>);

fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // As YAML 1.1 parsers read Kubernetes YAML (and Go's yaml.v3, SOPS' parser): `yes` stays a
    // string, `0777` is octal.
    options.strict_booleans = true;
    options.legacy_octal_numbers = true;
    options
}

fn parse_error(format: Format) -> impl Fn(String) -> Error {
    move |message| Error::Parse { format: format.name(), message }
}

/// The documents of a YAML (or JSON) manifest file, empty ones skipped.
pub fn load_documents(bytes: &[u8], format: Format) -> Result<Vec<Value>, Error> {
    let error = parse_error(format);
    let text = std::str::from_utf8(bytes).map_err(|_| error("the file is not UTF-8".into()))?;
    let documents: Vec<Value> = if format == Format::Json {
        vec![serde_json::from_str(text).map_err(|e| error(e.to_string()))?]
    } else {
        serde_saphyr::from_multiple_with_options(text, yaml_options()).map_err(|e| error(e.to_string()))?
    };
    Ok(documents.into_iter().filter(|d| *d != Value::Null).collect())
}

/// Splits documents into branches and the first one's `sops` metadata tree.
pub fn split_metadata(documents: Vec<Value>) -> Result<(Vec<Branch>, Value), Error> {
    let mut branches = Vec::new();
    for document in documents {
        match document {
            Value::Map(entries) => branches.push(entries),
            _ => return Err(Error::Parse { format: "YAML", message: "a document is not a mapping".into() }),
        }
    }
    // The metadata is the first document's; every document drops its `sops` entry.
    let metadata = branches.first().and_then(|b| b.iter().find(|(k, _)| k == "sops")).map(|(_, v)| v.clone()).ok_or(Error::NoMetadata)?;
    for branch in &mut branches {
        branch.retain(|(k, _)| k != "sops");
    }
    Ok((branches, metadata))
}

/// The document's branches and its `sops` metadata tree.
pub fn load(bytes: &[u8], format: Format) -> Result<(Vec<Branch>, Value), Error> {
    let error = parse_error(format);
    let text = || std::str::from_utf8(bytes).map_err(|_| error("the file is not UTF-8".into()));
    match format {
        Format::Yaml | Format::Json | Format::Binary => {
            let format = if format == Format::Yaml { Format::Yaml } else { Format::Json };
            split_metadata(load_documents(bytes, format)?)
        }
        Format::Dotenv => {
            let mut branch = Branch::new();
            let mut flat = Vec::new();
            for line in text()?.split('\n') {
                if line.is_empty() || line.starts_with('#') {
                    // Comments are not hashed; the generator that reads the output skips them.
                    continue;
                }
                let (key, value) = line.split_once('=').ok_or_else(|| error("a line without '='".into()))?;
                let value = value.replace("\\n", "\n");
                match key.strip_prefix("sops_") {
                    Some(meta) => flat.push((meta.to_owned(), Value::Str(value))),
                    None => branch.push((key.to_owned(), Value::Str(value))),
                }
            }
            if flat.is_empty() {
                return Err(Error::NoMetadata);
            }
            Ok((vec![branch], metadata::unflatten(&flat)?))
        }
        Format::Ini => {
            let sections = parse_ini(text()?).map_err(&error)?;
            let mut branch = Branch::new();
            let mut meta = None;
            for (name, entries) in sections {
                if name == "sops" {
                    let flat: Vec<(String, Value)> = entries.into_iter().map(|(k, v)| (k, Value::Str(v.replace("\\n", "\n")))).collect();
                    meta = Some(metadata::unflatten(&flat)?);
                } else {
                    branch.push((name, Value::Map(entries.into_iter().map(|(k, v)| (k, Value::Str(v))).collect())));
                }
            }
            Ok((vec![branch], meta.ok_or(Error::NoMetadata)?))
        }
    }
}

/// INI sections in order, `DEFAULT` first as Go's ini library has it; `;`/`#` comment lines.
/// Hand-written: the format is a dozen lines of rules, and the INI crates order or type values
/// differently from the library SOPS uses.
fn parse_ini(text: &str) -> Result<Vec<Section>, String> {
    let mut sections: Vec<Section> = vec![("DEFAULT".to_owned(), Vec::new())];
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.trim().to_owned(), Vec::new()));
            continue;
        }
        let (key, value) = line.split_once(['=', ':']).ok_or_else(|| format!("line {}: expected 'key = value'", number + 1))?;
        let mut value = value.trim();
        if value.len() >= 2 && ((value.starts_with('"') && value.ends_with('"')) || (value.starts_with('\'') && value.ends_with('\''))) {
            value = &value[1..value.len() - 1];
        }
        if let Some((_, entries)) = sections.last_mut() {
            entries.push((key.trim().to_owned(), value.to_owned()));
        }
    }
    Ok(sections)
}

pub fn emit(branches: &[Branch], format: Format) -> Result<Vec<u8>, Error> {
    let error = |message: String| Error::Emit { format: format.name(), message };
    match format {
        Format::Yaml => {
            let mut out = String::new();
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_saphyr::to_string(&Value::Map(branch.clone())).map_err(|e| error(e.to_string()))?);
            }
            Ok(out.into_bytes())
        }
        Format::Json => {
            let [branch] = branches else { return Err(error("a JSON file has exactly one document".into())) };
            let mut out = serde_json::to_vec_pretty(&Value::Map(branch.clone())).map_err(|e| error(e.to_string()))?;
            out.push(b'\n');
            Ok(out)
        }
        Format::Binary => {
            let [branch] = branches else { return Err(error("there must be exactly one tree branch".into())) };
            match branch.iter().find(|(k, _)| k == "data").map(|(_, v)| v) {
                Some(Value::Str(s)) => Ok(s.clone().into_bytes()),
                Some(Value::Bytes(b)) => Ok(b.clone()),
                _ => Err(error("no binary data found in the document ('data')".into())),
            }
        }
        Format::Dotenv => {
            let [branch] = branches else { return Err(error("a dotenv file has exactly one document".into())) };
            let mut out = String::new();
            for (key, value) in branch {
                if matches!(value, Value::Map(_) | Value::Seq(_)) {
                    return Err(error(format!("cannot use a complex value in a dotenv file; offending key {key}")));
                }
                out.push_str(&format!("{key}={}\n", value.to_plain_string().replace('\n', "\\n")));
            }
            Ok(out.into_bytes())
        }
        Format::Ini => {
            let [branch] = branches else { return Err(error("an INI file has exactly one document".into())) };
            let mut out = String::new();
            for (name, section) in branch {
                let Value::Map(entries) = section else { return Err(error("INI sections hold key/value pairs".into())) };
                if name == "DEFAULT" && entries.is_empty() {
                    continue;
                }
                // Go's ini library aligns the `=` of a section's keys.
                let width = entries.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
                out.push_str(&format!("[{name}]\n"));
                for (key, value) in entries {
                    out.push_str(&format!("{key:width$} = {}\n", value.to_plain_string()));
                }
                out.push('\n');
            }
            Ok(out.into_bytes())
        }
    }
}
