locals {
  # IAM policy names are at most 128 characters; table names may be longer.
  policy_name = substr(coalesce(var.policy_name, "monotone-${var.table_name}"), 0, 128)
}

# Least privilege for monotone: item reads and writes on this one table, plus
# DescribeTable and CreateTable only when monotone may create the table itself.
data "aws_iam_policy_document" "monotone" {
  statement {
    sid    = "MonotoneItems"
    effect = "Allow"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
    ]
    resources = [aws_dynamodb_table.monotone.arn]
  }

  dynamic "statement" {
    for_each = var.allow_auto_create ? [1] : []

    content {
      sid    = "MonotoneAutoCreate"
      effect = "Allow"
      actions = [
        "dynamodb:DescribeTable",
        "dynamodb:CreateTable",
      ]
      resources = [aws_dynamodb_table.monotone.arn]
    }
  }
}

resource "aws_iam_policy" "monotone" {
  name        = local.policy_name
  description = "monotone: counters and queues in DynamoDB table ${var.table_name}"
  policy      = data.aws_iam_policy_document.monotone.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "monotone" {
  for_each = toset(var.role_names)

  role       = each.value
  policy_arn = aws_iam_policy.monotone.arn
}
