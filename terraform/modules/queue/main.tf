# The intake queue, its dead-letter queue (redrive after maxReceiveCount), the queue policy that lets the
# intake bucket send to it, and the intake bucket's ObjectCreated notification. All from storage-policies/.

resource "aws_sqs_queue" "dlq" {
  name                      = var.intake_dlq.name
  message_retention_seconds = tonumber(var.intake_dlq.attributes.MessageRetentionPeriod)
  sqs_managed_sse_enabled   = lookup(var.intake_dlq.attributes, "SqsManagedSseEnabled", "false") == "true"
  tags                      = var.tags
}

resource "aws_sqs_queue" "intake" {
  name                       = var.intake_queue.name
  visibility_timeout_seconds = tonumber(var.intake_queue.attributes.VisibilityTimeout)
  message_retention_seconds  = tonumber(var.intake_queue.attributes.MessageRetentionPeriod)
  receive_wait_time_seconds  = tonumber(var.intake_queue.attributes.ReceiveMessageWaitTimeSeconds)
  sqs_managed_sse_enabled    = lookup(var.intake_queue.attributes, "SqsManagedSseEnabled", "false") == "true"
  redrive_policy             = var.intake_queue.redrive_policy
  tags                       = var.tags

  # The redrive policy names the DLQ by its ARN (rendered from names); make the order explicit.
  depends_on = [aws_sqs_queue.dlq]
}

resource "aws_sqs_queue_policy" "intake" {
  queue_url = aws_sqs_queue.intake.id
  policy    = var.intake_queue.policy
}

resource "aws_s3_bucket_notification" "intake" {
  bucket = var.intake_bucket_id

  dynamic "queue" {
    for_each = var.notification
    content {
      id            = queue.value.id
      queue_arn     = queue.value.queue_arn
      events        = queue.value.events
      filter_prefix = queue.value.filter_prefix
      filter_suffix = queue.value.filter_suffix
    }
  }

  # S3 checks that it may send to the queue when the notification is created.
  depends_on = [aws_sqs_queue_policy.intake]
}
