"""share log and saved audiences

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Every share and cancellation of an audience (``share/log/``), and saved audiences (saved
targeting bundles, ``dmp/saved_audience/*``). Portable SQL only (SQLite and PostgreSQL).
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audience_share_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('audience_id', sa.BigInteger(), nullable=False),
    sa.Column('owner_id', sa.BigInteger(), nullable=False),
    sa.Column('advertiser_id', sa.BigInteger(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audience_share_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audience_share_log_audience_id'), ['audience_id'],
                              unique=False)
    op.create_table('saved_audiences',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('advertiser_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=512), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('saved_audiences', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_saved_audiences_advertiser_id'), ['advertiser_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('saved_audiences', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_saved_audiences_advertiser_id'))
    op.drop_table('saved_audiences')
    with op.batch_alter_table('audience_share_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audience_share_log_audience_id'))
    op.drop_table('audience_share_log')
