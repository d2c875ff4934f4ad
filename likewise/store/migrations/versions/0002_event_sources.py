"""event sources

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Pixels, apps, offline and CRM event sets, lead forms and platform accounts. Portable SQL only
(SQLite and PostgreSQL): plain types, a named unique constraint, batch mode for the indexes.
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('event_sources',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('advertiser_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('modified_at', sa.DateTime(), nullable=False),
    sa.Column('last_event_at', sa.DateTime(), nullable=True),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['advertiser_id'], ['advertisers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    # the lookup of every Events API request: (kind, code) -> source
    sa.UniqueConstraint('kind', 'code', name='uq_event_sources_kind_code')
    )
    with op.batch_alter_table('event_sources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_sources_advertiser_id'), ['advertiser_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_sources_deleted'), ['deleted'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('event_sources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_sources_deleted'))
        batch_op.drop_index(batch_op.f('ix_event_sources_advertiser_id'))

    op.drop_table('event_sources')
