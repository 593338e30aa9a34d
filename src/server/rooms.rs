use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::soliplex::Detail;
use super::ApiError;
use crate::state::{AppState, Room};

fn describe(room: &Room) -> Value {
    let c = &room.config;
    // soliplex's room view needs `welcome_message`; soliplex itself falls back to the description.
    let welcome = c.welcome_message.as_ref().unwrap_or(&c.description);
    json!({
        "id": c.id,
        "name": c.name,
        "description": c.description,
        "welcome_message": welcome,
        "suggestions": c.suggestions,
        "agent": {
            "id": format!("room-{}", c.id),
            "kind": c.agent.kind,
            "factory_name": room.factory_name,
            "strategies": room.agent.strategies(),
        },
        // The rest of soliplex's room model: a room here has no tools, MCP, skills, quizzes,
        // state features or uploads.
        "tools": {},
        "mcp_client_toolsets": {},
        "skills": {},
        "quizzes": {},
        "agui_feature_names": [],
        "allow_mcp": false,
        "has_thread_uploads": false,
        "has_room_uploads": false,
    })
}

pub async fn list(State(app): State<AppState>) -> Json<Value> {
    Json(Value::Array(app.rooms().iter().map(describe).collect()))
}

/// soliplex answers its room list as an object keyed by room id.
pub async fn list_by_id(State(app): State<AppState>) -> Json<Value> {
    let map = app
        .rooms()
        .iter()
        .map(|r| (r.config.id.clone(), describe(r)))
        .collect();
    Json(Value::Object(map))
}

pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.room(&id)
        .map(|r| Json(describe(r)))
        .ok_or(ApiError::RoomNotFound(id))
}

/// soliplex's `GET /api/v1/rooms/{id}`: an unknown room is a 404 with soliplex's `{"detail"}` body.
pub async fn get_by_id(state: State<AppState>, id: Path<String>) -> Result<Json<Value>, Detail> {
    Ok(get(state, id).await?)
}
