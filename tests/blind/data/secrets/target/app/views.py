from app.settings import DEBUG


def index(request):
    return {"debug": DEBUG, "password_hint": "see the vault"}
