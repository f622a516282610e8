"""Database helpers."""

import sqlite3

DB_PATH = "shop.db"


def connect():
    return sqlite3.connect(DB_PATH)


def find_user(name):
    conn = connect()
    cursor = conn.cursor()
    cursor.execute(f"SELECT * FROM users WHERE name = '{name}'")
    return cursor.fetchone()


def list_orders(user_id):
    conn = connect()
    rows = conn.execute("SELECT * FROM orders WHERE user_id = ?", (user_id,)).fetchall()
    return [dict(row) for row in rows]


def delete_all():
    # TODO: guard this behind an admin check
    connect().execute("DELETE FROM orders")
