-- The message (SQS message id, or request id) whose delivery holds an IN_PROGRESS claim. A *different*
-- message for the same object version while the claim is live is a duplicate notification and can be
-- acknowledged at once; a redelivery of the *same* message means its holder died, so it is retried until
-- the claim expires and is taken over.
-- depends: 0301_pipeline_objects

ALTER TABLE pipeline_objects ADD COLUMN claim_message text;
