//! Building blocks shared by the pages.

pub mod auth_card;
pub mod badge;
pub mod chart;
pub mod field;
pub mod form_error;
pub mod format;
pub mod guide_upload;
pub mod handler;
pub mod item_editor;
pub mod job_monitor;
pub mod keyed;
pub mod list;
pub mod loaded;
pub mod loading;
pub mod logo;
pub mod page_title;
pub mod progress;
pub mod shell;
