"""lookalike audiences

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

A lookalike's definition (its seed and TikTok's ``lookalike_spec``), the quality report of its
last build, and why it stopped refreshing (its seed was deleted). Portable SQL only (SQLite and
PostgreSQL).
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audience_lookalikes',
    sa.Column('audience_id', sa.BigInteger(), nullable=False),
    sa.Column('seed_id', sa.BigInteger(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('quality', sa.JSON(), nullable=True),
    sa.Column('built_at', sa.DateTime(), nullable=True),
    sa.Column('refresh_stopped', sa.Text(), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['audience_id'], ['audiences.id'], ),
    sa.PrimaryKeyConstraint('audience_id')
    )
    with op.batch_alter_table('audience_lookalikes', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_audience_lookalikes_seed_id'), ['seed_id'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('audience_lookalikes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audience_lookalikes_seed_id'))
    op.drop_table('audience_lookalikes')
