"""audience rules

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

The definition of rule audiences (website, app, lead, engagement, business account, shop,
offline). Portable SQL only (SQLite and PostgreSQL).
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audience_rules',
    sa.Column('audience_id', sa.BigInteger(), nullable=False),
    sa.Column('audience_type', sa.String(length=32), nullable=False),
    sa.Column('rule_spec', sa.JSON(), nullable=False),
    sa.Column('auto_refresh', sa.Boolean(), nullable=False),
    sa.Column('evaluated_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['audience_id'], ['audiences.id'], ),
    sa.PrimaryKeyConstraint('audience_id')
    )


def downgrade() -> None:
    op.drop_table('audience_rules')
