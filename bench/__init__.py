"""The benchmark: our exporter against mtail and prometheus-postfix-exporter on one generated mail log."""
