# Identity policies per principal, from storage-policies/user-policies/ (bucket policies alone are not
# enough: same-account principals need an identity Allow too).

resource "aws_iam_policy" "this" {
  for_each = var.user_policies

  name        = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  description = "TMI ${each.key} access, from storage-policies/user-policies"
  policy      = each.value
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "this" {
  for_each = var.attach_to_roles

  role       = each.value
  policy_arn = aws_iam_policy.this[each.key].arn
}
