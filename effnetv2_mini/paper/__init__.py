"""The paper's ideas, each in a file named after it: what a student reads
(sections 3-5 of the paper)."""
