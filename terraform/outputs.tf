output "table_name" {
  description = "Name of the DynamoDB table (pass it to monotone as -t/--table)."
  value       = aws_dynamodb_table.monotone.name
}

output "table_arn" {
  description = "ARN of the DynamoDB table."
  value       = aws_dynamodb_table.monotone.arn
}

output "policy_arn" {
  description = "ARN of the IAM policy granting monotone access to the table."
  value       = aws_iam_policy.monotone.arn
}

output "policy_json" {
  description = "The IAM policy document, as JSON."
  value       = data.aws_iam_policy_document.monotone.json
}
