"""The seed article's manifest, verbatim: the format every feedback test reads and edits."""

SEED = """\
apiVersion: ai.apexlogic.com/v1alpha1
kind: ServerlessModelDeployment
metadata:
  name: fraud-detection-model-v2
  namespace: ai-production
spec:
  modelRef:
    name: fraud-detection-model
    version: "2.1.0"
  runtime:
    platform: "aws-lambda"
    region: "us-east-1"
    memory: "4096MB"
    timeout: "30s"
    environment:
      MODEL_BUCKET: "s3://apexlogic-models-prod"
      LOG_LEVEL: "INFO"
  trafficSplit:
    blue: "100%"
    green: "0%" # For canary deployments
  autoscaling:
    minReplicas: 1
    maxReplicas: 10
    targetUtilization: 70
  finops:
    costCenter: "FraudDetection"
    budgetLimit: "$5000/month"
    alertThreshold: "80%"
  policies:
    - "data-privacy-compliance"
    - "model-explainability-required"
"""
