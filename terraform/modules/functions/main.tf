# The two Lambda functions built from functions/: intake (SQS event source with per-item failures) and
# republish (on a schedule). The role is the pipeline principal: its policy comes from storage-policies.

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "pipeline" {
  name               = "${var.name_prefix}-pipeline"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "pipeline" {
  role       = aws_iam_role.pipeline.name
  policy_arn = var.pipeline_policy_arn
}

resource "aws_iam_role_policy_attachment" "logs" {
  role       = aws_iam_role.pipeline.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}

resource "aws_iam_role_policy_attachment" "vpc" {
  count = length(var.subnet_ids) > 0 ? 1 : 0

  role       = aws_iam_role.pipeline.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

locals {
  functions = {
    intake    = var.intake_handler
    republish = var.republish_handler
  }
}

resource "aws_lambda_function" "this" {
  for_each = local.functions

  function_name    = "${var.name_prefix}-${each.key}"
  role             = aws_iam_role.pipeline.arn
  runtime          = var.runtime
  handler          = each.value
  filename         = var.package_path
  source_code_hash = filebase64sha256(var.package_path)
  memory_size      = var.memory_mb
  timeout          = var.timeout_s
  tags             = var.tags

  environment {
    variables = var.environment
  }

  dynamic "vpc_config" {
    for_each = length(var.subnet_ids) > 0 ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = var.security_group_ids
    }
  }
}

resource "aws_lambda_event_source_mapping" "intake" {
  event_source_arn        = var.intake_queue_arn
  function_name           = aws_lambda_function.this["intake"].arn
  batch_size              = var.batch_size
  function_response_types = ["ReportBatchItemFailures"]
}

resource "aws_cloudwatch_event_rule" "republish" {
  count = var.republish_schedule == null ? 0 : 1

  name                = "${var.name_prefix}-republish"
  schedule_expression = var.republish_schedule
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "republish" {
  count = var.republish_schedule == null ? 0 : 1

  rule = aws_cloudwatch_event_rule.republish[0].name
  arn  = aws_lambda_function.this["republish"].arn
}

resource "aws_lambda_permission" "republish" {
  count = var.republish_schedule == null ? 0 : 1

  statement_id  = "AllowEventBridge"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["republish"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.republish[0].arn
}
