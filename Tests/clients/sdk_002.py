"""Seed 002's Python SDK example against a live `wan serve`.

The class below is copied verbatim from seed 002 ("SDK Examples / Python SDK"); only the usage
at the bottom differs: it takes the server's address and this test's model ids from argv
(the seed's "my-model" ids are not name@version ids), and prints a JSON summary last.
"""
import requests
from typing import Dict, List, Optional

class EnhancedModelAvailabilityClient:
    def __init__(self, base_url: str = "http://localhost:8000/api/v1", api_key: Optional[str] = None):
        self.base_url = base_url
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def get_model_status(self, model_id: Optional[str] = None) -> Dict:
        """Get model status for all models or specific model."""
        url = f"{self.base_url}/models/status/detailed"
        if model_id:
            url += f"/{model_id}"

        response = requests.get(url, headers=self.headers)
        response.raise_for_status()
        return response.json()

    def start_download(self, model_id: str, max_retries: int = 3, priority: str = "normal") -> Dict:
        """Start model download with retry logic."""
        url = f"{self.base_url}/models/download/manage"
        data = {
            "model_id": model_id,
            "action": "start",
            "max_retries": max_retries,
            "priority": priority
        }

        response = requests.post(url, json=data, headers=self.headers)
        response.raise_for_status()
        return response.json()

    def get_download_progress(self, model_id: str) -> Dict:
        """Get download progress for a model."""
        url = f"{self.base_url}/models/download/progress/{model_id}"

        response = requests.get(url, headers=self.headers)
        response.raise_for_status()
        return response.json()

    def get_model_suggestions(self, requested_model: str, requirements: Dict) -> Dict:
        """Get alternative model suggestions."""
        url = f"{self.base_url}/models/fallback/suggest"
        data = {
            "requested_model": requested_model,
            "requirements": requirements
        }

        response = requests.post(url, json=data, headers=self.headers)
        response.raise_for_status()
        return response.json()

    def get_usage_analytics(self, model_id: Optional[str] = None, period: str = "week") -> Dict:
        """Get usage analytics."""
        url = f"{self.base_url}/models/analytics"
        if model_id:
            url += f"/{model_id}"

        params = {"period": period}
        response = requests.get(url, headers=self.headers, params=params)
        response.raise_for_status()
        return response.json()


# Usage example (seed 002's, with this test's server and models)
if __name__ == "__main__":
    import json
    import sys

    base_url, missing_model = sys.argv[1], sys.argv[2]
    client = EnhancedModelAvailabilityClient(base_url=base_url + "/api/v1")

    # Check model status
    status = client.get_model_status(missing_model)
    print(f"Model available: {status['is_available']}")

    # Start download if not available
    started = None
    if not status['is_available']:
        result = client.start_download(missing_model)
        started = result['success']
        print(f"Download started: {result['success']}")

    # Get suggestions for unavailable model
    suggestions = client.get_model_suggestions(
        missing_model,
        {"quality": "high", "speed": "medium"}
    )
    print(f"Suggested alternative: {suggestions['suggestions'][0]['suggested_model']}")

    progress = client.get_download_progress(missing_model)
    everything = client.get_model_status()
    analytics = client.get_usage_analytics(period="week")
    print(json.dumps({
        "was_available": status["is_available"],
        "download_started": started,
        "suggested": suggestions["suggestions"][0]["suggested_model"],
        "progress_status": progress["status"],
        "models": sorted(everything["models"]),
        "analytics_days": analytics["time_period"]["days"],
    }))
