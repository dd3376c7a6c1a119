//! One module per route.

pub mod answers;
pub mod dashboard;
pub mod guide;
pub mod guides;
pub mod not_found;
pub mod reports;
pub mod settings;
pub mod signin;
pub mod signup;
pub mod test_run;
pub mod training;
pub mod training_job;
