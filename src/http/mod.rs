//! The HTTP edge: the JSON routes (`routes`), the server-rendered pages (`web`), the one error they
//! answer with and its status table (`error`), the body and query extractors (`extract`), the token
//! extractors (`auth`) and CORS (`cors`). Below it, services know nothing of HTTP.

pub mod auth;
pub mod cors;
pub mod error;
pub mod extract;
pub mod routes;
pub mod web;
