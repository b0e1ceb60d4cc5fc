"""What people read: views, evidence, headlines, wording, gate history and the narrative."""
