"""Export: merge an adapter into its base and write a standard Hugging Face model folder."""
