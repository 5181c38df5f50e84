-- Runs once, when the volume is initialised: MLflow's backend store lives beside docent's data.
CREATE DATABASE mlflow;
