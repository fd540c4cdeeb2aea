# The Lambda functions built from functions/: intake (SQS event source with per-item failures), republish
# and reconcile (each on a schedule). The role is the pipeline principal: its policy comes from
# storage-policies (it may list the intake bucket and send to the intake queue, which reconcile needs).

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
    reconcile = var.reconcile_handler
  }
  schedules = { for name, expression in {
    republish = var.republish_schedule
    reconcile = var.reconcile_schedule
  } : name => expression if expression != null }
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
  timeout          = each.key == "reconcile" ? var.reconcile_timeout_s : var.timeout_s
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

resource "aws_cloudwatch_event_rule" "schedule" {
  for_each = local.schedules

  name                = "${var.name_prefix}-${each.key}"
  schedule_expression = each.value
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "schedule" {
  for_each = local.schedules

  rule = aws_cloudwatch_event_rule.schedule[each.key].name
  arn  = aws_lambda_function.this[each.key].arn
}

resource "aws_lambda_permission" "schedule" {
  for_each = local.schedules

  statement_id  = "AllowEventBridge"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this[each.key].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule[each.key].arn
}

# The republish schedule used to be three count-based resources: keep deployed ones in place.
moved {
  from = aws_cloudwatch_event_rule.republish[0]
  to   = aws_cloudwatch_event_rule.schedule["republish"]
}

moved {
  from = aws_cloudwatch_event_target.republish[0]
  to   = aws_cloudwatch_event_target.schedule["republish"]
}

moved {
  from = aws_lambda_permission.republish[0]
  to   = aws_lambda_permission.schedule["republish"]
}
