//! Script and synthetic-answer mutations: upload scripts, score an answer, synthesise
//! answers, confirm a synthetic answer.

use async_graphql::{Context, ErrorExtensions, Object, Result, Upload, ID};

use super::types::{
    ScoreLevel, ScriptInput, ScriptResult, ScriptStatus, Submission, SyntheticAnswer,
    UploadScriptsPayload,
};
use crate::error::{AppError, GqlResultExt};
use crate::graphql::answers::types::{Answer, AnswerSplit};
use crate::graphql::jobs::types::Job;
use crate::graphql::{parse_id, require_user, state};
use crate::service::scripts::{self, ScriptFile, ScriptOutcome};
use crate::service::synthesis::{self, SynthesisRequest};

/// Reads an uploaded file (the multipart request already enforced the size limit).
async fn read_upload(ctx: &Context<'_>, file: Upload) -> Result<(String, Vec<u8>)> {
    let value = file
        .value(ctx)
        .map_err(|err| AppError::bad_input(format!("The upload could not be read: {err}.")))
        .gql()?;
    let filename = value.filename.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut bytes = Vec::new();
        value.into_read().read_to_end(&mut bytes).map(|_| bytes)
    })
    .await
    .map_err(AppError::internal)
    .gql()?
    .map_err(AppError::internal)
    .gql()?;
    Ok((filename, bytes))
}

/// Script and synthetic-answer mutations.
#[derive(Default)]
pub struct ScriptMutation;

#[Object]
impl ScriptMutation {
    /// Uploads whole student scripts (one PDF, DOCX or TXT per student; multipart request,
    /// up to 4 files per request) for a guide. A script that labels its answers with the
    /// guide's item labels is split at once (`SPLIT`); otherwise a `SCRIPT_SPLIT` job splits
    /// it with the language model (`QUEUED`; follow the job). Answers are unscored unless
    /// `scores` gives them, and go to `split` (default TRAIN). Each file succeeds or fails on
    /// its own (a file uploaded before is `DUPLICATE`); when every file fails, the first
    /// file's error is returned as the request's error.
    async fn upload_scripts(
        &self,
        ctx: &Context<'_>,
        guide_id: ID,
        scripts: Vec<ScriptInput>,
        #[graphql(default_with = "AnswerSplit::Train")] split: AnswerSplit,
    ) -> Result<UploadScriptsPayload> {
        let auth = require_user(ctx)?;
        let app = state(ctx)?;
        let guide_id = parse_id(&guide_id, "guide")?;
        if scripts.is_empty() {
            return Err(AppError::bad_input("Give at least one script.")).gql();
        }
        let mut results = Vec::with_capacity(scripts.len());
        let mut first_error = None;
        for input in scripts {
            let (filename, bytes) = read_upload(ctx, input.file).await?;
            let file = ScriptFile {
                filename: filename.clone(),
                bytes,
                student_ref: input.student_ref,
                scores: input
                    .scores
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| (s.item_label, s.score))
                    .collect(),
            };
            match scripts::upload(app, auth.user_id, guide_id, file, split.into()).await {
                Ok(done) => {
                    let (status, answers, job) = match done.outcome {
                        ScriptOutcome::Split { answers } => (ScriptStatus::Split, answers, None),
                        ScriptOutcome::Queued { job } => {
                            (ScriptStatus::Queued, Vec::new(), Some(Job::from(*job)))
                        }
                    };
                    results.push(ScriptResult {
                        filename,
                        status,
                        submission: Some(Submission::new(done.submission, answers)),
                        job,
                        error: None,
                        error_code: None,
                    });
                }
                Err(err) => {
                    let err = AppError::from(err);
                    let (message, code) = match &err {
                        AppError::User { message, code } => (message.clone(), *code),
                        AppError::Internal(_) => (
                            "Internal server error; the details are in the server log.".to_owned(),
                            err.code(),
                        ),
                    };
                    let extended = err.extend();
                    if first_error.is_none() {
                        first_error = Some(extended);
                    }
                    results.push(ScriptResult {
                        filename,
                        status: ScriptStatus::Failed,
                        submission: None,
                        job: None,
                        error: Some(message),
                        error_code: Some(code.as_str().to_owned()),
                    });
                }
            }
        }
        let count = |s: ScriptStatus| results.iter().filter(|r| r.status == s).count() as i32;
        let (split_n, queued, failed) = (
            count(ScriptStatus::Split),
            count(ScriptStatus::Queued),
            count(ScriptStatus::Failed),
        );
        if failed as usize == results.len() {
            if let Some(err) = first_error {
                return Err(err);
            }
        }
        Ok(UploadScriptsPayload {
            results,
            split: split_n,
            queued,
            failed,
        })
    }

    /// Sets the teacher's score (and optionally the split) of one of the caller's answers,
    /// e.g. an answer from a script. Scoring a synthetic answer also confirms it.
    async fn score_answer(
        &self,
        ctx: &Context<'_>,
        id: ID,
        score: f64,
        split: Option<AnswerSplit>,
    ) -> Result<Answer> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "answer")?;
        Ok(scripts::score_answer(
            &state(ctx)?.db,
            auth.user_id,
            id,
            score,
            split.map(Into::into),
        )
        .await
        .gql()?
        .into())
    }

    /// Queues a `SYNTHESIS` job: the language model writes `perLevel` answers per item
    /// (`itemIds`, default every item) and level. They are stored unscored with the model's
    /// suggested score kept apart (`syntheticAnswers`), and stay out of training until the
    /// teacher confirms them.
    async fn synthesize_answers(
        &self,
        ctx: &Context<'_>,
        guide_id: ID,
        levels: Vec<ScoreLevel>,
        #[graphql(default = 1)] per_level: i32,
        item_ids: Option<Vec<ID>>,
        #[graphql(default_with = "AnswerSplit::Train")] split: AnswerSplit,
    ) -> Result<Job> {
        let auth = require_user(ctx)?;
        let guide_id = parse_id(&guide_id, "guide")?;
        let item_ids = item_ids
            .map(|ids| {
                ids.iter()
                    .map(|id| parse_id(id, "guide item"))
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        let request = SynthesisRequest {
            levels: levels.into_iter().map(Into::into).collect(),
            per_level: u32::try_from(per_level).unwrap_or(0),
            item_ids,
            split: split.into(),
        };
        Ok(
            synthesis::start(state(ctx)?, auth.user_id, guide_id, request)
                .await
                .gql()?
                .into(),
        )
    }

    /// Confirms a synthetic answer: its teacher score becomes `score`, or the suggested
    /// score when `score` is left out (the teacher accepts the suggestion). From then on it
    /// counts like any scored answer.
    async fn confirm_synthetic_answer(
        &self,
        ctx: &Context<'_>,
        answer_id: ID,
        score: Option<f64>,
        split: Option<AnswerSplit>,
    ) -> Result<SyntheticAnswer> {
        let auth = require_user(ctx)?;
        let id = parse_id(&answer_id, "answer")?;
        Ok(synthesis::confirm(
            &state(ctx)?.db,
            auth.user_id,
            id,
            score,
            split.map(Into::into),
        )
        .await
        .gql()?
        .into())
    }
}
