//! Building blocks shared by the pages.

pub mod auth_card;
pub mod empty_card;
pub mod field;
pub mod form_error;
pub mod guard;
pub mod logo;
pub mod page_title;
