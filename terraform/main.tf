# The DynamoDB table monotone stores its counters and queues in.
#
# Only the hash key `ID` is declared: DynamoDB is schemaless beyond the key,
# and monotone writes the other attributes (Type, Version, Value, Items) itself.
resource "aws_dynamodb_table" "monotone" {
  name         = var.table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "ID"

  attribute {
    name = "ID"
    type = "S"
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  deletion_protection_enabled = var.deletion_protection

  tags = var.tags
}
