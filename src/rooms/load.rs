use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{LoadedRoom, RoomConfig};

/// A rooms directory or room file that cannot be used; the message names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("rooms directory {dir}: {detail}")]
    Dir { dir: PathBuf, detail: String },
    #[error("{file}: cannot read: {detail}")]
    Read { file: PathBuf, detail: String },
    #[error("{file}: invalid YAML: {detail}")]
    Yaml { file: PathBuf, detail: String },
    #[error("{file}: field `{field}`: {message}")]
    Field {
        file: PathBuf,
        field: String,
        message: String,
    },
    #[error("{file}: duplicate room id '{id}' (already defined in {first})")]
    DuplicateId {
        file: PathBuf,
        id: String,
        first: PathBuf,
    },
}

/// Loads every room in `dir`: `<room>/room_config.yaml` folders and `<id>.yaml` files, in id order.
pub fn load_rooms_dir(dir: &Path) -> Result<Vec<LoadedRoom>, RoomError> {
    let dir_err = |detail: String| RoomError::Dir {
        dir: dir.to_owned(),
        detail,
    };
    let entries = fs::read_dir(dir).map_err(|e| {
        dir_err(format!(
            "{e}; pass --rooms-dir or set ROOMHOST_ROOMS_DIR to a folder of room configs"
        ))
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| dir_err(e.to_string()))?.path();
        if path.is_dir() {
            let config = path.join("room_config.yaml");
            if config.is_file() {
                files.push(config);
            }
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(dir_err(
            "holds no rooms (expected <room>/room_config.yaml folders or <id>.yaml files)".into(),
        ));
    }

    let mut rooms = Vec::with_capacity(files.len());
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let room = load_room_file(&file)?;
        if let Some(first) = seen.get(&room.config.id) {
            return Err(RoomError::DuplicateId {
                file,
                id: room.config.id,
                first: first.clone(),
            });
        }
        seen.insert(room.config.id.clone(), file);
        rooms.push(room);
    }
    rooms.sort_by_key(|r| sort_key(&r.config));
    Ok(rooms)
}

fn sort_key(room: &RoomConfig) -> (bool, String, String) {
    let order = match &room.order {
        Some(serde_yaml::Value::Number(n)) => format!("{:020}", n.as_u64().unwrap_or(u64::MAX)),
        Some(serde_yaml::Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    (room.order.is_none(), order, room.id.clone())
}

/// Parses and checks one room file. Agent factories are resolved later, by the app builder.
pub fn load_room_file(file: &Path) -> Result<LoadedRoom, RoomError> {
    let text = fs::read_to_string(file).map_err(|e| RoomError::Read {
        file: file.to_owned(),
        detail: e.to_string(),
    })?;
    let field = |field: &str, message: String| RoomError::Field {
        file: file.to_owned(),
        field: field.to_owned(),
        message,
    };
    let value: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| RoomError::Yaml {
        file: file.to_owned(),
        detail: e.to_string(),
    })?;
    if !value.is_mapping() {
        return Err(RoomError::Yaml {
            file: file.to_owned(),
            detail: "the top level must be a mapping of keys (id, name, agent, …)".into(),
        });
    }
    if value.get("agent").is_none() {
        return Err(field(
            "agent",
            "missing; every room needs an agent section".into(),
        ));
    }
    let config: RoomConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        field(
            if path == "." { "(top level)" } else { &path },
            e.into_inner().to_string(),
        )
    })?;
    if config.id.trim().is_empty() {
        return Err(field(
            "id",
            "missing or empty; every room needs an id".into(),
        ));
    }
    if !config
        .id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(field(
            "id",
            format!("'{}' may hold only letters, digits, '-' and '_'", config.id),
        ));
    }
    let mut config = config;
    if config.name.trim().is_empty() {
        config.name = config.id.clone();
    }
    Ok(LoadedRoom {
        file: file.to_owned(),
        config,
    })
}
