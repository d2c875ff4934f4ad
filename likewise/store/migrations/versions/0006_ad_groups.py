"""ad groups

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Ad groups (status and targeting), the audiences applied to them (included or excluded), and
the log of every Apply and Disconnect (``apply/log/``). Portable SQL only (SQLite and
PostgreSQL).
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ad_groups',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('advertiser_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=512), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reach_frequency', sa.Boolean(), nullable=False),
    sa.Column('targeting', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('modified_at', sa.DateTime(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ad_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ad_groups_advertiser_id'), ['advertiser_id'],
                              unique=False)
    op.create_table('ad_group_audiences',
    sa.Column('ad_group_id', sa.BigInteger(), nullable=False),
    sa.Column('audience_id', sa.BigInteger(), nullable=False),
    sa.Column('usage_mode', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['ad_group_id'], ['ad_groups.id'], ),
    sa.ForeignKeyConstraint(['audience_id'], ['audiences.id'], ),
    sa.PrimaryKeyConstraint('ad_group_id', 'audience_id')
    )
    op.create_table('audience_apply_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('audience_id', sa.BigInteger(), nullable=False),
    sa.Column('ad_group_id', sa.BigInteger(), nullable=False),
    sa.Column('advertiser_id', sa.BigInteger(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('usage_mode', sa.String(length=16), nullable=False),
    sa.Column('editor', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audience_apply_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audience_apply_log_audience_id'), ['audience_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audience_apply_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audience_apply_log_audience_id'))
    op.drop_table('audience_apply_log')
    op.drop_table('ad_group_audiences')
    with op.batch_alter_table('ad_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ad_groups_advertiser_id'))
    op.drop_table('ad_groups')
