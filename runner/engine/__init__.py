"""The engine that runs stages: the pipeline (caching, atomic outputs, timing), MLflow tracking, the
start-up checks and the native-library checks. The only place besides the command line that imports runner.stages."""
