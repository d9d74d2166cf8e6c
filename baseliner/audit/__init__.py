"""The fleet audit: inventory, disk accounting, similarity and clusters, findings, proposals, reports."""
