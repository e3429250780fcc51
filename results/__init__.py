"""gansweep results: aggregation to Parquet and the comparison report."""
