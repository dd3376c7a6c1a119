//! Script and synthetic-answer queries: a guide's submissions and its synthetic answers.

use async_graphql::{Context, Object, Result, ID};

use super::types::{Submission, SyntheticAnswer};
use crate::error::GqlResultExt;
use crate::graphql::{parse_id, require_user, state};
use crate::service::{scripts, synthesis};

/// Script and synthetic-answer queries.
#[derive(Default)]
pub struct ScriptQuery;

#[Object]
impl ScriptQuery {
    /// A guide's submissions, newest first, with their answers; optionally only one source
    /// (`script`, `import` or `synthetic`).
    async fn submissions(
        &self,
        ctx: &Context<'_>,
        guide_id: ID,
        source: Option<String>,
    ) -> Result<Vec<Submission>> {
        let auth = require_user(ctx)?;
        let guide_id = parse_id(&guide_id, "guide")?;
        Ok(
            scripts::list_submissions(&state(ctx)?.db, auth.user_id, guide_id, source.as_deref())
                .await
                .gql()?
                .into_iter()
                .map(|(s, a)| Submission::new(s, a))
                .collect(),
        )
    }

    /// A guide's synthetic answers with their levels and suggested scores; `confirmed`
    /// filters on whether the teacher has confirmed them.
    async fn synthetic_answers(
        &self,
        ctx: &Context<'_>,
        guide_id: ID,
        confirmed: Option<bool>,
    ) -> Result<Vec<SyntheticAnswer>> {
        let auth = require_user(ctx)?;
        let guide_id = parse_id(&guide_id, "guide")?;
        Ok(
            synthesis::list(&state(ctx)?.db, auth.user_id, guide_id, confirmed)
                .await
                .gql()?
                .into_iter()
                .map(Into::into)
                .collect(),
        )
    }
}
